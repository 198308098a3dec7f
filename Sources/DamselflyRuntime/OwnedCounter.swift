import Synchronization

extension Atomic where Value == Int {
    /// Adds `delta` to a counter that only one thread ever writes (its loop's
    /// statistics, a shard's), while other threads may read it: a relaxed load
    /// and a relaxed store, which compile to plain moves. An `add` is a locked
    /// read-modify-write that drains the store buffer, paid per command several
    /// times over for a guarantee a single writer does not need. A reset must
    /// run on the writing thread too, or the writer's next store undoes it.
    @inlinable @inline(__always)
    public func addOwned(_ delta: Int) {
        store(load(ordering: .relaxed) &+ delta, ordering: .relaxed)
    }
}
