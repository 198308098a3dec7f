import CDamselfly
import Glibc

/// Starts OS threads for loops: plain pthreads, named `proactor<i>`, optionally
/// pinned to a CPU. No Dispatch and no Swift concurrency: each thread runs its
/// loop until stopped.
public enum LoopThread {
    private final class Start {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Spawns a joinable thread running `body`.
    public static func spawn(name: String, cpu: Int? = nil, _ body: @escaping () -> Void) -> pthread_t {
        let context = Unmanaged.passRetained(Start {
            dfly_set_thread_name(name)
            if let cpu { _ = dfly_pin_current_thread(Int32(cpu)) }
            body()
        }).toOpaque()
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, 8 * 1024 * 1024)
        let rc = pthread_create(&thread, &attributes, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body()
            return nil
        }, context)
        pthread_attr_destroy(&attributes)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return thread
    }

    public static func join(_ thread: pthread_t) {
        pthread_join(thread, nil)
    }
}
