import DamselflyServer
import Glibc

/// The `damselfly` executable: parse flags (command line, --flagfile,
/// DFLY_ environment variables), start the server, and wait for SIGTERM or
/// SIGINT (or SHUTDOWN, which raises SIGTERM) to stop it cleanly.

/// Writes a line straight to a file descriptor (unbuffered, so it is seen at once).
func writeLine(_ line: String, to fd: Int32) {
    let text = line + "\n"
    _ = text.withCString { write(fd, $0, strlen($0)) }
}

var environment: [String: String] = [:]
var envp = environ
while let entry = envp.pointee {
    let text = String(cString: entry)
    if let eq = text.firstIndex(of: "=") {
        environment[String(text[..<eq])] = String(text[text.index(after: eq)...])
    }
    envp += 1
}

let config: ServerConfig
do {
    switch try ConfigParser.parse(arguments: Array(CommandLine.arguments.dropFirst()), environment: environment) {
    case .help(let text):
        print(text)
        exit(0)
    case .version(let text):
        print(text)
        exit(0)
    case .run(let parsed):
        config = parsed
    }
} catch {
    writeLine("damselfly: \(error)", to: 2)
    exit(1)
}

// Signals go to this thread only: block them before any loop thread starts
// (threads inherit the mask), then wait for them synchronously.
signal(SIGPIPE, SIG_IGN)
var signals = sigset_t()
sigemptyset(&signals)
sigaddset(&signals, SIGTERM)
sigaddset(&signals, SIGINT)
pthread_sigmask(SIG_BLOCK, &signals, nil)

var executable = [CChar](repeating: 0, count: 4096)
let executableLength = readlink("/proc/self/exe", &executable, 4095)
let executablePath = executableLength > 0 ? String(cString: executable) : CommandLine.arguments[0]

let server = Server(config: config, executablePath: executablePath)
server.makeSharedObjectsImmortal()
do {
    try server.start()
} catch {
    writeLine("damselfly: \(error)", to: 2)
    exit(1)
}
let log: (String) -> Void = { line in
    writeLine(line, to: config.logtostdout ? 1 : 2)
}
if !server.startupLog.isEmpty { log("damselfly: " + server.startupLog) }
log("damselfly \(ServerConfig.versionString): listening on \(config.bind):\(server.boundPort)\(config.adminPort > 0 ? ", admin port \(config.adminBind.isEmpty ? config.bind : config.adminBind):\(config.adminPort)" : ""), \(server.loops.count) threads, \(server.engine.shardSet.count) shards, \(server.usesIOUring ? "io_uring" : "epoll")")

var received: Int32 = 0
sigwait(&signals, &received)
log("damselfly: received signal \(received), shutting down")
server.shutdown()
log("damselfly: bye")
exit(0)
