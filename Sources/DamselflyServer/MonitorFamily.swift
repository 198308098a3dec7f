import DamselflyCommands

/// MONITOR: the connection reports every command the server runs from now on
/// (Connection.feedMonitors, ScriptRun for redis.call), until RESET or close.
enum MonitorFamily {
    static func register(_ r: CommandRegistry) {
        r.register("monitor", arity: 1, flags: [.admin, .noscript, .loading, .stale, .noMulti], group: "server") { call in
            guard let connection = call.sink as? Connection else {
                return call.reply(.error("ERR MONITOR isn't allowed for DENY BLOCKING client"))
            }
            // Redis answers a second MONITOR with nothing at all.
            if connection.isMonitoring { return call.reply(.raw([])) }
            connection.startMonitoring()
            call.reply(.ok)
        }
    }
}
