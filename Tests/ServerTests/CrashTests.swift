import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import Store
import Synchronization
import TestSupport

/// The real executable, killed with SIGKILL mid-job and started again on the same data.
@Suite("Crash and resume", .serialized) struct CrashTests {
    /// The job each run trains: MAE pretraining, and a fine-tuning run with every random part of
    /// its recipe on (mixup, CutMix, drop path, random crops) and held-out scores every 100 steps.
    static func body(_ task: String) -> (json: [String: Any], total: Int) {
        switch task {
        case "finetune":
            (["method": "mae", "preset": "tiny", "task": "finetune", "dataset": "synthetic", "total_steps": 3000, "batch_size": 4,
              "overrides": ["checkpoint_every": 100, "mixup": 0.8, "cutmix": 1.0, "drop_path": 0.2, "eval_every": 100, "eval_images": 16]], 3000)
        default:
            (["method": "mae", "preset": "tiny", "total_steps": 6000, "batch_size": 4, "overrides": ["checkpoint_every": 100]], 6000)
        }
    }

    @Test(arguments: ["pretrain", "finetune"]) func aKilledServerResumesItsJobFromTheLastCheckpoint(task: String) async throws {
        #expect(FileManager.default.isExecutableFile(atPath: MIMServeProcess.executable.path), "build mimserve first: \(MIMServeProcess.executable.path)")
        let work = Scratch.url("mimserve-crash")
        let dataDir = work.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        // Started from an unrelated working directory: Migrations/ and Public/ are found anyway.
        let first = try MIMServeProcess.serve(dataDir: dataDir, workingDirectory: work)
        let (body, total) = Self.body(task)
        // A watchdog on its own OS thread reads the database file (a WAL reader) and kills the
        // server once the first checkpoint and some later metric rows have committed. A thread, not a task: other suites may
        // keep the test process's cooperative pool busy for seconds.
        let dbPath = dataDir.appendingPathComponent("mimserve.sqlite").path
        let pid = first.process.processIdentifier
        let killed = DispatchSemaphore(value: 0)
        let seen = Mutex(0)
        let watchdog = Thread {
            defer { killed.signal() }
            guard let watcher = try? Store(path: dbPath, migrations: MigrationSet.locate()) else { return }
            // The server always reaches its first checkpoint; a stall (no job row or no checkpoint
            // for ten minutes) would be a bug, not a slow machine.
            let deadline = Date().addingTimeInterval(600)
            while Date() < deadline {
                // Once metric rows past the first checkpoint are committed too, so that the restart
                // has steps to replay and compare.
                if let job = try? watcher.jobs(JobQuery(limit: 1)).jobs.first,
                   let step = try? watcher.latestCheckpoint(jobID: job.id)?.step,
                   let rows = try? watcher.metricCount(jobID: job.id), rows > step {
                    kill(pid, SIGKILL)
                    seen.withLock { $0 = step }
                    return
                }
                usleep(1000)
            }
        }
        watchdog.start()
        let job = try await first.post("/v1/jobs", body)
        let id = try #require(job["id"] as? String, "\(job)")
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { killed.wait(); c.resume() }
        }
        first.process.waitUntilExit()
        let checkpointStep = seen.withLock { $0 }
        #expect(checkpointStep >= 100)
        // What the killed process had committed, read from the file it left behind.
        var before: [Int: Double] = [:]
        do {
            let store = try Store(path: dbPath, migrations: MigrationSet.locate())
            for m in try store.metrics(jobID: id) { before[m.step] = m.loss }
        }
        let killedAt = before.keys.max() ?? 0
        #expect(killedAt >= checkpointStep && killedAt < total, "killed at \(killedAt): nothing was tested")

        let second = try MIMServeProcess.serve(dataDir: dataDir, workingDirectory: work)
        // Until the job ends, however long that takes here: the test fails only if the job
        // stops making progress (no new step for two minutes), never on a fixed time budget.
        var state = "", lastStep = -1, lastProgress = Date()
        while state != "succeeded" && state != "failed" && Date().timeIntervalSince(lastProgress) < 120 {
            let job = try await second.get("/v1/jobs/\(id)")
            state = job["state"] as? String ?? ""
            if let step = job["step"] as? Int, step != lastStep { (lastStep, lastProgress) = (step, Date()) }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(state == "succeeded", "job stalled at step \(lastStep) in state \(state)")
        second.process.terminate()
        second.process.waitUntilExit()
        let store = try Store(path: dbPath, migrations: MigrationSet.locate())
        var after: [Int: Double] = [:]
        for m in try store.metrics(jobID: id) { after[m.step] = m.loss }
        // Every step once, none lost; up to the checkpoint the rows are those written before the kill,
        // and the replayed steps after it reproduce the lost run exactly (same seed, same batches).
        #expect(after.keys.sorted() == Array(1...total))
        for step in 1...checkpointStep { #expect(after[step] == before[step], "step \(step)") }
        let replayed = before.keys.filter { $0 > checkpointStep }.sorted()
        #expect(!replayed.isEmpty, "the kill landed on the checkpoint: nothing was replayed")
        for step in replayed { #expect(after[step] == before[step], "replayed step \(step)") }

        #expect(try store.integrityCheck() == "ok")
        #expect(try store.metricCount(jobID: id) == total)
        let reasons = try store.events(jobID: id).map(\.dataJSON)
        #expect(reasons.contains { $0.contains("interrupted") })
        if task == "finetune" {
            // One held-out score per scoring step: those the killed run stored stay, none is scored twice.
            let scored = try store.evaluations(jobID: id).map(\.step).sorted()
            #expect(scored == Array(stride(from: 100, through: total, by: 100)), "\(scored)")
        }
        try? FileManager.default.removeItem(at: work)
    }
}
