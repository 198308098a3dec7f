import DamselflyRuntime
import Glibc

extension Server {
    /// Makes the objects that every loop thread reaches on each command
    /// immortal (see ``Immortal``): the server and its registries, the
    /// engine, the loops, the shard set with its shards and per-loop
    /// counters, the command table and its specs, the default ACL user (which
    /// cannot be deleted). Only for a server that lives as long as the process
    /// (`damselfly`'s main), before ``start()``: none of them is ever freed.
    /// `DAMSELFLY_MORTAL=1` in the environment skips it, to measure what it
    /// saves (docs/benchmarks.md, "The hop").
    public func makeSharedObjectsImmortal() {
        if getenv("DAMSELFLY_MORTAL") != nil { return }
        Immortal.make(self)
        Immortal.make(slowlog)
        Immortal.make(pubsub)
        Immortal.make(tracking)
        Immortal.make(limits)
        Immortal.make(latency)
        Immortal.make(clientPause)
        Immortal.make(engine)
        Immortal.make(engine.registry)
        for spec in engine.registry.commands.values { Immortal.make(spec) }
        Immortal.make(engine.acl)
        Immortal.make(engine.acl.defaultUser)
        Immortal.make(engine.monitors)
        Immortal.make(engine.scripts)
        Immortal.make(engine.functions)
        for counters in engine.loopCounters { Immortal.make(counters) }
        for registry in engine.blockedClients { Immortal.make(registry) }
        let shardSet = engine.shardSet
        Immortal.make(shardSet)
        Immortal.make(shardSet.tracking)
        Immortal.make(shardSet.keyspaceEvents)
        for loop in shardSet.loops { Immortal.make(loop) }
        for shard in shardSet.shards { Immortal.make(shard) }
        for stats in shardSet.stats { Immortal.make(stats) }
    }
}
