import CThreads
#if canImport(Glibc)
import Glibc
#endif

/// Per-thread nice values (Linux: setpriority(2) on a thread id). A trainer slot may run at a
/// lower priority than the HTTP server (`--trainer-nice`), so requests are answered first while
/// a job keeps the cores busy; with nothing else to run, a niced thread still gets the whole
/// CPU. The value this code gave a thread is remembered in a thread-local slot, so reading it
/// costs no system call.
public enum ThreadPriority {
    #if os(Linux)
    private static let slot: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    #endif

    /// The nice value this code last set on the calling thread (0 when it never did).
    public static var current: Int32 {
        #if os(Linux)
        return Int32(truncatingIfNeeded: Int(bitPattern: pthread_getspecific(slot)))
        #else
        return 0
        #endif
    }

    /// Sets the calling thread's nice value; false when the system refuses (lowering it again
    /// needs CAP_SYS_NICE or an RLIMIT_NICE allowance), and the thread keeps its value.
    @discardableResult
    public static func set(_ nice: Int32) -> Bool {
        #if os(Linux)
        guard setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(mimserve_gettid()), nice) == 0 else { return false }
        pthread_setspecific(slot, UnsafeRawPointer(bitPattern: Int(nice)))
        return true
        #else
        return false
        #endif
    }
}
