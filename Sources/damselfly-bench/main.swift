import Glibc

/// damselfly-bench: a multi-threaded RESP load generator shaped like memtier_benchmark, with a
/// queue mode shaped like Sidekiq's multi_queue_bench. See `--help` and docs/benchmarks.md.
func benchMain() -> Int32 {
    signal(SIGPIPE, SIG_IGN)
    let options = BenchOptions.parse(Array(CommandLine.arguments.dropFirst()))
    let report = options.streams != nil ? runStreams(options) : options.isQueueMode ? runQueues(options) : runKeyValue(options)
    if !options.quiet { writeStdout(report.table()) }
    if let path = options.jsonOut {
        guard let file = fopen(path, "w") else {
            writeStderr("damselfly-bench: cannot write \(path): \(String(cString: strerror(errno)))\n")
            return 1
        }
        var text = report.json()
        text.withUTF8 { _ = fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
    if let failure = report.failure {
        writeStderr("damselfly-bench: \(failure)\n")
        return 1
    }
    return 0
}

exit(benchMain())
