import Testing
@testable import DamselflyCommands

/// ``CommandRegistry/lookup(_:)``: the byte-keyed index finds what the `commands`
/// dictionary holds, whatever the case of the name, and nothing else.
@Suite struct CommandRegistryTests {
    func lookup(_ registry: CommandRegistry, _ name: String) -> CommandSpec? {
        Array(name.utf8).withUnsafeBytes { registry.lookup($0) }
    }

    @Test func everyRegisteredNameIsFoundInAnyCase() {
        let registry = CommandRegistry(loopCount: 1)
        StringFamily.register(registry)
        GenericFamily.register(registry)
        ListFamily.register(registry)
        StreamFamily.register(registry)
        // More names than the index's first table holds: it grew on the way.
        #expect(registry.commands.count > 64)
        for (name, spec) in registry.commands {
            #expect(lookup(registry, name) === spec)
            #expect(lookup(registry, name.uppercased()) === spec)
        }
        #expect(lookup(registry, "SeT")?.name == "set")
        #expect(lookup(registry, "nosuchcommand") == nil)
        #expect(lookup(registry, "") == nil)
        #expect(lookup(registry, "se") == nil)
        #expect(lookup(registry, "sets") == nil)
        #expect(lookup(registry, String(repeating: "x", count: 40)) == nil)
    }

    @Test func registeringANameAgainReplacesItsSpec() {
        let registry = CommandRegistry(loopCount: 1)
        registry.register("ping", arity: 1, flags: [], group: "test") { _ in }
        let first = lookup(registry, "PING")
        registry.register("ping", arity: -1, flags: [], group: "test") { _ in }
        #expect(lookup(registry, "ping") !== first)
        #expect(lookup(registry, "ping")?.arity == -1)
        #expect(registry.commands.count == 1)
    }
}
