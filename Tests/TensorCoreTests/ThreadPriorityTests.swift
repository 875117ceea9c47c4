import Foundation
import Testing
@testable import TensorCore

@Suite("Thread priority") struct ThreadPriorityTests {
    /// The nice value the kernel holds for the calling thread (field 19 of /proc/thread-self/stat).
    static func kernelNice() -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 16 ? Int32(fields[16]) : nil  // fields after "(comm)" start at field 3
    }

    @Test func settingANiceValueChangesThisThreadOnly() async {
        let seen: (Int32, Int32?, Int32?) = await withCheckedContinuation { c in
            Thread {
                let before = Self.kernelNice()
                ThreadPriority.set(7)
                c.resume(returning: (ThreadPriority.current, Self.kernelNice(), before))
            }.start()
        }
        #expect(seen.0 == 7 && seen.1 == 7, "\(seen)")
        #expect(Self.kernelNice() == seen.2, "another thread's nice value changed too")
    }
}
