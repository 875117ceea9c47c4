import Foundation
import Testing
import TestSupport

/// A server gives back what a job used once it is idle again: a paper-scale job and a tiny one
/// later, its resident memory is within 150 MB of what it was at start.
@Suite("Memory returns", .serialized) struct MemoryReturnTests {
    /// A field of /proc/PID/status in MB: `VmRSS` (resident now) or `VmHWM` (the most it ever was).
    static func statusMB(_ pid: Int32, _ field: String = "VmRSS") -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let kb = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return nil }
        return kb / 1024
    }

    @Test func idleResidentMemoryReturnsToItsStartAfterJobs() async throws {
        let work = Scratch.url("mimserve-memory")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let server = try MIMServeProcess.serve(dataDir: work.appendingPathComponent("data"), workingDirectory: work)
        defer { server.process.terminate(); server.process.waitUntilExit() }
        let pid = server.process.processIdentifier
        _ = try await server.get("/v1/jobs")
        let start = try #require(Self.statusMB(pid))
        for body: [String: Any] in [
            ["method": "simmim", "preset": "simmim_swin_tiny_patch4_window7_224", "batch_size": 2, "total_steps": 2],
            ["method": "mae", "preset": "tiny", "total_steps": 20],
        ] {
            let id = try #require(try await server.post("/v1/jobs", body)["id"] as? String)
            var state = ""
            // Until the job ends; a stall of two minutes without progress fails the test.
            var lastStep = -1, lastProgress = Date()
            while !["succeeded", "failed", "cancelled"].contains(state) && Date().timeIntervalSince(lastProgress) < 120 {
                let job = try await server.get("/v1/jobs/\(id)")
                state = job["state"] as? String ?? ""
                if let step = job["step"] as? Int, step != lastStep { (lastStep, lastProgress) = (step, Date()) }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(state == "succeeded")
        }
        // The slot trims right after it records the end: wait for that, however long it takes here.
        var idle = Self.statusMB(pid) ?? .infinity
        let deadline = Date().addingTimeInterval(60)
        while idle > start + 150 && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
            idle = Self.statusMB(pid) ?? .infinity
        }
        // The kernel's high-water mark, not a sample: a poll can miss a short job's peak on a busy machine.
        let peak = try #require(Self.statusMB(pid, "VmHWM"))
        print("memory: start \(Int(start)) MB, peak seen \(Int(peak)) MB, idle after the jobs \(Int(idle)) MB")
        #expect(peak > start + 300, "the paper-scale job should have used memory (peak \(peak) MB)")
        #expect(idle <= start + 150, "idle \(idle) MB after jobs, \(start) MB at start")
    }
}
