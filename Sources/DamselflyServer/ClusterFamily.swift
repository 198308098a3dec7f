import DamselflyACL
import DamselflyCommands
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions

/// CLUSTER, READONLY, READWRITE and ASKING.
///
/// Standalone (the default) they are refused as on a Redis without `cluster-enabled`. Under
/// `--cluster_mode=emulated` (Dragonfly's flag) the server answers as a Redis 7.0 cluster of one
/// node that owns all 16,384 slots, plus the replicas its replication master has online, so a
/// cluster-mode client (redis-py's `RedisCluster`, Lettuce, go-redis's ClusterClient) connects
/// unchanged: every slot it looks up routes back to this node. Nothing is sharded by slot; keys
/// stay on the shards ``KeyHash`` places them on, and a multi-key command spanning slots runs as
/// any other multi-shard transaction instead of answering CROSSSLOT.
enum ClusterFamily {
    static let disabled = Reply.error("ERR This instance has cluster support disabled")

    static func register(_ r: CommandRegistry, server: Server) {
        let emulated = server.clusterEmulated
        r.register("cluster", arity: -2, flags: [], group: "cluster") { call in
            guard emulated else { return call.reply(disabled) }
            cluster(call, server: server)
        }
        // Replica reads and slot migration: with one node there is nothing to redirect, so
        // cluster mode accepts them as no-ops.
        for name in ["readonly", "readwrite", "asking"] {
            r.register(name, arity: 1, flags: [.fast, .loading, .stale], group: "cluster") { call in
                call.reply(emulated ? .ok : disabled)
            }
        }
    }

    // MARK: - CLUSTER subcommands

    /// Each subcommand's arity as Redis 7.0's command table has it (all exact).
    static let arities: [String: Int] = [
        "info": 2, "myid": 2, "nodes": 2, "slots": 2, "shards": 2, "links": 2, "help": 2,
        "keyslot": 3, "countkeysinslot": 3, "getkeysinslot": 4,
    ]

    /// Redis's subcommands that change or depend on a real multi-node cluster; they are
    /// refused with a clear error rather than as unknown.
    static let unsupported: Set<String> = [
        "addslots", "addslotsrange", "bumpepoch", "count-failure-reports", "delslots", "delslotsrange",
        "failover", "forget", "flushslots", "meet", "replicate", "reset", "set-config-epoch", "setslot",
        "replicas", "slaves", "saveconfig",
    ]

    static func cluster(_ call: CommandCall, server: Server) {
        let sub = call.args.string(1).lowercased()
        guard let arity = arities[sub] else {
            if unsupported.contains(sub) {
                return call.reply(.error("ERR CLUSTER \(sub.uppercased()) is not supported with --cluster_mode=emulated"))
            }
            return call.reply(.error("ERR unknown subcommand '\(call.args.string(1))'. Try CLUSTER HELP."))
        }
        guard call.args.count == arity else {
            return call.reply(.error("ERR wrong number of arguments for 'cluster|\(sub)' command"))
        }
        var topology: Topology { Topology(server: server, client: call.client) }
        switch sub {
        case "info": call.reply(.verbatim(topology.info()))
        case "myid": call.reply(.bulkString(myID))
        case "nodes": call.reply(.verbatim(topology.nodes()))
        case "slots": call.reply(topology.slots())
        case "shards": call.reply(topology.shards())
        case "links": call.reply(.array([]))  // No cluster bus: no links to peers.
        case "keyslot":
            call.reply(.integer(ClusterSlot.slot(of: call.args.bytes(2))))
        case "countkeysinslot":
            guard let slot = call.integer(2) else { return call.reply(.notInteger) }
            guard slot >= 0 && slot < ClusterSlot.count else { return call.reply(.error("ERR Invalid slot")) }
            keysInSlot(call, slot: Int(slot), limit: nil) { count, _ in call.reply(.integer(count)) }
        case "getkeysinslot":
            guard let slot = call.integer(2), let count = call.integer(3) else { return call.reply(.notInteger) }
            guard count >= 0, slot >= 0, slot < ClusterSlot.count else {
                return call.reply(.error("ERR Invalid slot or number of keys"))
            }
            keysInSlot(call, slot: Int(slot), limit: Int(count)) { _, keys in call.reply(.array(keys.map { .bulk($0) })) }
        default:
            call.reply(.array(help.map { .simple($0) }))
        }
    }

    static let help = [
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "COUNTKEYSINSLOT <slot>",
        "    Return the number of keys in <slot>.",
        "GETKEYSINSLOT <slot> <count>",
        "    Return key names stored by current node in a slot.",
        "INFO",
        "    Return information about the cluster.",
        "KEYSLOT <key>",
        "    Return the hash slot for <key>.",
        "MYID",
        "    Return the node id.",
        "NODES",
        "    Return cluster configuration seen by node. Output format:",
        "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
        "SLOTS",
        "    Return information about slots range mappings. Each range is made of:",
        "    start, end, master and replicas IP addresses, ports and ids",
        "SHARDS",
        "    Return information about slot range mappings and the nodes associated with them.",
        "LINKS",
        "    Return information about all network links between this node and its peers.",
        "    Output format is an array where each array element is a map containing attributes of a link",
        "HELP",
        "    Prints this help.",
    ]

    /// COUNTKEYSINSLOT / GETKEYSINSLOT: slots are not indexed (keys are placed by XXH64, not by
    /// slot), so every shard walks its keys of the client's database once and hashes each name;
    /// fine for the one-node emulation, where clients ask this only while resharding.
    static func keysInSlot(_ call: CommandCall, slot: Int, limit: Int?, done: @escaping (Int, [[UInt8]]) -> Void) {
        let database = call.client.database
        call.shardSet.broadcast(from: call.loop, { shard -> (Int, [[UInt8]]) in
            let db = shard.database(database)
            var count = 0
            var keys: [[UInt8]] = []
            db.forEach(nowMs: Clock.wallMillis()) { entry in
                db.withKey(at: entry) { key in
                    guard ClusterSlot.slot(of: key) == slot else { return }
                    count += 1
                    if let limit, keys.count < limit { keys.append(Array(key)) }
                }
            }
            return (count, keys)
        }, done: { parts in
            let keys = parts.flatMap { $0.1 }
            done(parts.reduce(0) { $0 + $1.0 }, limit.map { Array(keys.prefix($0)) } ?? keys)
        })
    }

    // MARK: - The one-node topology

    /// One node as CLUSTER NODES / SLOTS / SHARDS describe it.
    struct Node {
        let id: String
        let ip: String
        let port: Int
        let offset: Int
        let online: Bool
        let lastAckMs: Int64
    }

    /// This node and its online replicas, seen from one client's connection.
    struct Topology {
        let me: Node
        let replicas: [Node]

        /// The node announces the address the client reached it on (its connection's local
        /// address), so the client's next connection lands on the same port (plain or TLS)
        /// and interface; Redis announces its bus-learned IP, which a one-node cluster lacks.
        init(server: Server, client: ClientState) {
            var ip = server.config.bind == "0.0.0.0" || server.config.bind.isEmpty ? "127.0.0.1" : server.config.bind
            var port = server.boundPort
            if let colon = client.localAddress.lastIndex(of: ":"),
               let p = Int(client.localAddress[client.localAddress.index(after: colon)...]) {
                ip = String(client.localAddress[..<colon])
                if ip.hasPrefix("[") && ip.hasSuffix("]") { ip = String(ip.dropFirst().dropLast()) }
                port = p
            }
            var offset = 0
            var replicas: [Node] = []
            if let feed = server.replication.feed {
                (offset, replicas) = feed.state.withLock { s in
                    (s.offset, s.replicas.filter { $0.phase == .online || $0.phase == .waitingAck }.map { link in
                        Node(id: ClusterFamily.nodeID(seed: "\(link.ip):\(link.listeningPort)"), ip: link.ip,
                             port: link.listeningPort, offset: link.ackOffset.load(ordering: .relaxed), online: true,
                             lastAckMs: link.lastAckMs)
                    })
                }
            }
            me = Node(id: ClusterFamily.myID, ip: ip, port: port, offset: offset, online: true, lastAckMs: 0)
            self.replicas = replicas
        }

        /// CLUSTER INFO as a healthy Redis 7.0 node that owns every slot and never gossiped.
        func info() -> String {
            let fields: [(String, String)] = [
                ("cluster_state", "ok"),
                ("cluster_slots_assigned", String(ClusterSlot.count)),
                ("cluster_slots_ok", String(ClusterSlot.count)),
                ("cluster_slots_pfail", "0"),
                ("cluster_slots_fail", "0"),
                ("cluster_known_nodes", String(1 + replicas.count)),
                ("cluster_size", "1"),
                ("cluster_current_epoch", "0"),
                ("cluster_my_epoch", "0"),
                ("cluster_stats_messages_sent", "0"),
                ("cluster_stats_messages_received", "0"),
                ("total_cluster_links_buffer_limit_exceeded", "0"),
            ]
            return fields.map { "\($0.0):\($0.1)\r\n" }.joined()
        }

        /// CLUSTER NODES: `<id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <epoch>
        /// <link-state> <slots>`. There is no cluster bus; the bus port shown is the client port.
        func nodes() -> String {
            var lines = ["\(me.id) \(me.ip):\(me.port)@\(me.port) myself,master - 0 0 0 connected 0-\(ClusterSlot.count - 1)"]
            for r in replicas {
                lines.append("\(r.id) \(r.ip):\(r.port)@\(r.port) slave \(me.id) 0 \(r.lastAckMs) 0 connected")
            }
            return lines.map { $0 + "\n" }.joined()
        }

        /// CLUSTER SLOTS: one range, the master first, then its replicas; each node's
        /// trailing networking-metadata map is empty (no hostname announced).
        func slots() -> Reply {
            func entry(_ n: Node) -> Reply { .array([.bulkString(n.ip), .integer(n.port), .bulkString(n.id), .map([])]) }
            return .array([.array([.integer(0), .integer(ClusterSlot.count - 1), entry(me)] + replicas.map(entry))])
        }

        /// CLUSTER SHARDS: one shard with every slot, its nodes as Redis 7.0 describes them.
        func shards() -> Reply {
            func entry(_ n: Node, role: String) -> Reply {
                .map([
                    (.bulkString("id"), .bulkString(n.id)),
                    (.bulkString("port"), .integer(n.port)),
                    (.bulkString("ip"), .bulkString(n.ip)),
                    (.bulkString("endpoint"), .bulkString(n.ip)),
                    (.bulkString("role"), .bulkString(role)),
                    (.bulkString("replication-offset"), .integer(n.offset)),
                    (.bulkString("health"), .bulkString(n.online ? "online" : "loading")),
                ])
            }
            return .array([.map([
                (.bulkString("slots"), .array([.integer(0), .integer(ClusterSlot.count - 1)])),
                (.bulkString("nodes"), .array([entry(me, role: "master")] + replicas.map { entry($0, role: "replica") })),
            ])])
        }
    }

    /// This node's 40-hex-digit ID, fixed for the process's life as a Redis node's is for its
    /// nodes.conf (there is no nodes.conf: a restarted server is a new node to clients, which
    /// only use the ID to tell nodes apart).
    static let myID = nodeID(seed: InfoReport.runID + ":node")

    /// A stable ID for `seed`: replicas do not tell the master their node ID, so theirs is
    /// derived from their address, the same across reconnections.
    static func nodeID(seed: String) -> String {
        String(SHA256.hex(Array(seed.utf8)).prefix(40))
    }
}

extension Server {
    /// `--cluster_mode=emulated`: CLUSTER answers, INFO says `cluster_enabled:1`, SELECT is
    /// limited to database 0 as in Redis Cluster.
    var clusterEmulated: Bool { config.clusterMode == "emulated" }
}
