/// Arguments of one parsed command.
///
/// Each argument is a view into the receive buffer (zero copy), or into the object's own
/// scratch memory for inline (telnet-style) commands whose quoted arguments needed unescaping.
///
/// Why offsets instead of pointers: a multibulk frame may arrive in many reads, and the caller is
/// allowed to move its receive buffer between reads (compaction, growth). Every entry therefore
/// stores its start relative to `base` (the frame start of the latest parse call); the parser only
/// updates `base` when it resumes a frame, so resuming costs O(1) instead of O(completed args).
/// Entries that point elsewhere (scratch memory, views appended by hand) store their absolute
/// address minus `base`, which the same formula turns back into the absolute address.
///
/// One instance is meant to live as long as its connection: storage is grown, never shrunk, so
/// steady-state parsing allocates nothing.
public final class CommandArguments {
    /// Start (relative to `base`, wrapping arithmetic) and length of one argument.
    @usableFromInline
    struct Entry {
        @usableFromInline var start: Int
        @usableFromInline var count: Int
        @inlinable init(start: Int, count: Int) {
            self.start = start
            self.count = count
        }
    }

    /// Mutable state, kept behind a pointer the class holds as a `let`: stored `var`s of a class
    /// get a dynamic exclusivity check (swift_beginAccess) on every access, which showed up as
    /// ~20% of parse time; pointer accesses have none.
    @usableFromInline
    struct State {
        /// Address of the frame start the relative entries refer to (0 when built by hand).
        @usableFromInline var base: Int = 0
        @usableFromInline var entries: UnsafeMutablePointer<Entry>
        @usableFromInline var capacity: Int
        @usableFromInline var count: Int = 0
        /// Scratch memory for unescaped inline arguments; never reallocated while one line is split.
        @usableFromInline var scratch: UnsafeMutableRawPointer?
        @usableFromInline var scratchCapacity: Int = 0
        /// The argument whose key hash is in `hashedValue` (-1: none): kept for
        /// DamselflyCommands' `keyHash(_:)`, which alone writes it, so that the
        /// connection's migration check and the command's own key hash the key once.
        @usableFromInline var hashedIndex: Int = -1
        @usableFromInline var hashedValue: UInt64 = 0
        /// That argument's shard (-1: not worked out yet), for DamselflyCommands'
        /// `keyShard(_:in:)`: the squash and migration checks and the command
        /// itself look it up once.
        @usableFromInline var hashedShard: Int = -1

        @usableFromInline
        init(entries: UnsafeMutablePointer<Entry>, capacity: Int) {
            self.entries = entries
            self.capacity = capacity
        }
    }

    @usableFromInline let state: UnsafeMutablePointer<State>

    public init() {
        state = .allocate(capacity: 1)
        state.initialize(to: State(entries: .allocate(capacity: 16), capacity: 16))
    }

    deinit {
        state.pointee.entries.deallocate()
        state.pointee.scratch?.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Number of arguments, the command name included.
    @inlinable public var count: Int { state.pointee.count }

    /// The bytes of argument `index`. Valid until the next parse into this object, or until the
    /// caller mutates or frees the buffer it parsed from.
    ///
    /// Always inlined: every command reads its name and keys through it, and as a call it cost
    /// more than the few loads it does. One unsigned compare checks both bounds (`count` is
    /// never negative, so a negative index becomes a huge unsigned one).
    @inlinable @inline(__always)
    public subscript(index: Int) -> UnsafeRawBufferPointer {
        precondition(UInt(bitPattern: index) < UInt(bitPattern: state.pointee.count), "argument index out of range")
        let entry = state.pointee.entries[index]
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: state.pointee.base &+ entry.start), count: entry.count)
    }

    /// A copy of argument `index`, for values that must outlive the receive buffer.
    @inlinable
    public func bytes(_ index: Int) -> [UInt8] {
        Array(self[index])
    }

    /// Argument `index` decoded as UTF-8 (invalid sequences become U+FFFD).
    @inlinable
    public func string(_ index: Int) -> String {
        String(decoding: self[index], as: UTF8.self)
    }

    /// Argument `index` as Redis prints it with `%s` in an error: up to its first NUL byte.
    public func cString(_ index: Int) -> String {
        let arg = self[index]
        return String(decoding: arg[..<(arg.firstIndex(of: 0) ?? arg.count)], as: UTF8.self)
    }

    /// Argument `index` as Redis names a subcommand in an error (`'%.128s'`): up to its first
    /// NUL byte and at most 128 bytes.
    public func subcommandName(_ index: Int) -> String {
        let arg = self[index]
        let end = min(arg.firstIndex(of: 0) ?? arg.count, 128)
        return String(decoding: arg[..<end], as: UTF8.self)
    }

    /// Compares argument `index` with a lowercase ASCII literal, ignoring ASCII case: this is how
    /// Redis matches command names and options (strcasecmp), without allocating.
    @inlinable
    public func equalsASCIICaseInsensitive(_ index: Int, _ lowercaseLiteral: StaticString) -> Bool {
        let arg = self[index]
        let count = lowercaseLiteral.utf8CodeUnitCount
        guard arg.count == count else { return false }
        let literal = lowercaseLiteral.utf8Start
        var i = 0
        while i < count {
            var byte = arg[i]
            if byte >= 0x41 && byte <= 0x5A { byte |= 0x20 }
            if byte != literal[i] { return false }
            i += 1
        }
        return true
    }

    /// Argument `index` with ASCII letters uppercased (other bytes decoded lossily), for command
    /// table lookups and error messages such as "unknown command".
    public func uppercasedName(_ index: Int) -> String {
        let arg = self[index]
        return String(unsafeUninitializedCapacity: arg.count) { out in
            var i = 0
            for var byte in arg {
                if byte >= 0x61 && byte <= 0x7A { byte &= ~0x20 }
                out[i] = byte
                i += 1
            }
            return i
        }
    }

    /// Forgets all arguments (keeps storage).
    @inlinable
    public func removeAll() {
        state.pointee.count = 0
        state.pointee.base = 0
        state.pointee.hashedIndex = -1
    }

    /// Appends a view owned by the caller (tests, or owners that build arguments by hand).
    @inlinable
    public func append(_ view: UnsafeRawBufferPointer) {
        appendEntry(start: Int(bitPattern: view.baseAddress) &- state.pointee.base, count: view.count)
    }

    // MARK: - Parser support

    /// Starts a new frame whose relative entries refer to `frameStart`.
    @inlinable
    func reset(frameStart: UnsafeRawPointer?) {
        state.pointee.count = 0
        state.pointee.base = Int(bitPattern: frameStart)
        state.pointee.hashedIndex = -1
    }

    /// The hash cached for argument `index` by `remember(hash:of:)`, if any.
    @inlinable
    public func rememberedHash(of index: Int) -> UInt64? {
        state.pointee.hashedIndex == index ? state.pointee.hashedValue : nil
    }

    /// Caches `hash` as argument `index`'s until the next command is parsed
    /// (one argument at a time). Only DamselflyCommands' `keyHash(_:)` calls it.
    @inlinable
    public func remember(hash: UInt64, of index: Int) {
        state.pointee.hashedIndex = index
        state.pointee.hashedValue = hash
        state.pointee.hashedShard = -1
    }

    /// The shard cached for argument `index` by `remember(shard:of:)`, if any.
    @inlinable
    public func rememberedShard(of index: Int) -> Int? {
        state.pointee.hashedIndex == index && state.pointee.hashedShard >= 0 ? state.pointee.hashedShard : nil
    }

    /// Caches argument `index`'s shard beside its hash (which must be cached already).
    @inlinable
    public func remember(shard: Int, of index: Int) {
        if state.pointee.hashedIndex == index { state.pointee.hashedShard = shard }
    }

    /// The receive buffer moved: relative entries follow it. O(1) whatever the number of entries.
    @inlinable
    func rebase(frameStart: UnsafeRawPointer?) {
        state.pointee.base = Int(bitPattern: frameStart)
    }

    @inlinable
    func appendEntry(start: Int, count: Int) {
        let count0 = state.pointee.count
        if count0 == state.pointee.capacity { grow() }
        state.pointee.entries[count0] = Entry(start: start, count: count)
        state.pointee.count = count0 + 1
    }

    /// Doubling keeps appends amortised O(1); only huge multibulks ever reach this.
    @usableFromInline
    func grow() {
        let newCapacity = state.pointee.capacity * 2
        let newEntries = UnsafeMutablePointer<Entry>.allocate(capacity: newCapacity)
        newEntries.moveInitialize(from: state.pointee.entries, count: state.pointee.count)
        state.pointee.entries.deallocate()
        state.pointee.entries = newEntries
        state.pointee.capacity = newCapacity
    }

    /// Makes room for `bytes` of unescaped inline data. Called once per inline line, before any
    /// scratch entry of that line exists, so growing cannot invalidate a live view.
    @usableFromInline
    func reserveScratch(_ bytes: Int) -> UnsafeMutableRawPointer {
        if let scratch = state.pointee.scratch, state.pointee.scratchCapacity >= bytes { return scratch }
        state.pointee.scratch?.deallocate()
        let newCapacity = Swift.max(bytes, 256)
        let memory = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        state.pointee.scratch = memory
        state.pointee.scratchCapacity = newCapacity
        return memory
    }
}
