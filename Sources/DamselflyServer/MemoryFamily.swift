import CDamselfly
import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc

/// MEMORY USAGE / STATS / DOCTOR / MALLOC-STATS / PURGE / HELP, with Redis 7.0's
/// field names. Damselfly accounts its keyspace itself (see `Database.usedBytes`), so
/// "allocated" figures are that accounting and the allocator ones come from the RSS.
enum MemoryFamily {
    static func register(_ r: CommandRegistry, server: Server) {
        r.register("memory", arity: -2, flags: [.readonly], firstKey: 2, lastKey: 2, keyStep: 1, group: "server") { call in
            let n = call.args.count
            switch call.args.string(1).lowercased() {
            case "usage":
                guard n == 3 || (n == 5 && call.isArg(3, "samples")) else { return call.reply(.syntaxError) }
                let key = call.key(2)
                call.runOnKey(key, mode: .shared) { ctx in
                    guard let found = key.withBytes({ ctx.database.find($0, hash: key.hash, nowMs: ctx.nowMs) }) else { return .null }
                    return .integer(ctx.database.memoryUsage(at: found))
                }
            case "stats" where n == 2:
                stats(call, server: server)
            case "doctor" where n == 2:
                call.reply(.verbatim(doctorReport(usedMemory: server.engine.usedMemory)))
            case "malloc-stats" where n == 2:
                // Redis's answer when it is not built with jemalloc (Damselfly uses the libc allocator).
                call.reply(.bulkString("Stats not supported for the current allocator"))
            case "purge" where n == 2:
                // As Redis built without jemalloc: nothing to purge, OK.
                call.reply(.ok)
            case "help" where n == 2:
                call.reply(.array(helpLines.map { .simple($0) }))
            case "stats", "doctor", "malloc-stats", "purge", "help":
                call.reply(.error("ERR wrong number of arguments for 'memory|\(call.args.string(1).lowercased())' command"))
            default:
                call.reply(.error("ERR unknown subcommand '\(call.args.string(1))'. Try MEMORY HELP."))
            }
        }
    }

    /// Redis's doctor: under 5 MB there is nothing to diagnose; above it Damselfly has no
    /// fragmentation or client-buffer findings of its own to report.
    static func doctorReport(usedMemory: Int) -> String {
        if usedMemory < 5 << 20 {
            return "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.\n"
        }
        return "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.\n"
    }

    struct DatabaseOverhead {
        var keys = 0
        var main = 0
        var expires = 0
    }

    /// MEMORY STATS: the per-database overheads are gathered from every shard.
    static func stats(_ call: CommandCall, server: Server) {
        let engine = server.engine
        let databases = engine.databaseCount
        engine.shardSet.broadcast(from: call.loop, { shard -> [DatabaseOverhead] in
            shard.keyspace.databases.map { db in
                let overhead = db.tableOverheadBytes
                return DatabaseOverhead(keys: db.count, main: overhead.main, expires: overhead.expires)
            }
        }, done: { perShard in
            server.notePeakMemory()
            let total = engine.usedMemory
            let peak = max(total, server.peakMemory.load(ordering: .relaxed))
            let startup = min(server.startupMemory.load(ordering: .relaxed), total)
            let rss = Int(dfly_rss_bytes())
            var pairs: [(Reply, Reply)] = [
                (.bulkString("peak.allocated"), .integer(peak)),
                (.bulkString("total.allocated"), .integer(total)),
                (.bulkString("startup.allocated"), .integer(startup)),
                (.bulkString("replication.backlog"), .integer(0)),
                (.bulkString("clients.slaves"), .integer(0)),
                (.bulkString("clients.normal"), .integer(0)),
                (.bulkString("cluster.links"), .integer(0)),
                (.bulkString("aof.buffer"), .integer(0)),
                (.bulkString("lua.caches"), .integer(0)),
                (.bulkString("functions.caches"), .integer(engine.functions.engineMemory)),
            ]
            var overheadTotal = startup
            var keys = 0
            for d in 0..<databases {
                var sum = DatabaseOverhead()
                for shard in perShard {
                    sum.keys += shard[d].keys
                    sum.main += shard[d].main
                    sum.expires += shard[d].expires
                }
                keys += sum.keys
                guard sum.keys > 0 else { continue }
                overheadTotal += sum.main + sum.expires
                pairs.append((.bulkString("db.\(d)"), .map([
                    (.bulkString("overhead.hashtable.main"), .integer(sum.main)),
                    (.bulkString("overhead.hashtable.expires"), .integer(sum.expires)),
                    (.bulkString("overhead.hashtable.slot-to-keys"), .integer(0)),
                ])))
            }
            let net = max(0, total - startup)
            let dataset = max(0, total - overheadTotal)
            let ratio = total > 0 ? Double(rss) / Double(total) : 0
            pairs += [
                (.bulkString("overhead.total"), .integer(overheadTotal)),
                (.bulkString("keys.count"), .integer(keys)),
                (.bulkString("keys.bytes-per-key"), .integer(keys > 0 ? net / keys : 0)),
                (.bulkString("dataset.bytes"), .integer(dataset)),
                (.bulkString("dataset.percentage"), .double(net > 0 ? Double(dataset) * 100 / Double(net) : 0)),
                (.bulkString("peak.percentage"), .double(peak > 0 ? Double(total) * 100 / Double(peak) : 0)),
                (.bulkString("allocator.allocated"), .integer(total)),
                (.bulkString("allocator.active"), .integer(total)),
                (.bulkString("allocator.resident"), .integer(rss)),
                (.bulkString("allocator-fragmentation.ratio"), .double(1)),
                (.bulkString("allocator-fragmentation.bytes"), .integer(0)),
                (.bulkString("allocator-rss.ratio"), .double(ratio)),
                (.bulkString("allocator-rss.bytes"), .integer(rss - total)),
                (.bulkString("rss-overhead.ratio"), .double(1)),
                (.bulkString("rss-overhead.bytes"), .integer(0)),
                (.bulkString("fragmentation"), .double(ratio)),
                (.bulkString("fragmentation.bytes"), .integer(rss - total)),
            ]
            call.reply(.map(pairs))
        })
    }

    static let helpLines = [
        "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DOCTOR",
        "    Return memory problems reports.",
        "MALLOC-STATS",
        "    Return internal statistics report from the memory allocator.",
        "PURGE",
        "    Attempt to purge dirty pages for reclamation by the allocator.",
        "STATS",
        "    Return information about the memory usage of the server.",
        "USAGE <key> [SAMPLES <count>]",
        "    Return memory in bytes used by <key> and its value. Nested values are",
        "    sampled up to <count> times (default: 5, 0 means sample all).",
        "HELP",
        "    Prints this help.",
    ]
}
