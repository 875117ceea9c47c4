import Config
import Foundation
import Models
import Synchronization
import Testing
import Store
import TensorCore
@testable import Trainer
import TestSupport

@Suite("Job configuration") struct JobConfigTests {
    @Test func defaultsComeFromThePresetAndItsRecipe() throws {
        let c = try JobConfig.resolve(JobRequest(method: "mae", preset: "tiny", totalSteps: 200))
        #expect(c.preset == "mae_vit_tiny_patch4_dec32d1b_32" && c.dataset == "synthetic")
        #expect(c.training.batchSize == 16 && c.training.baseLR == 1e-3 && c.training.warmupSteps == 10)
        let paper = try JobConfig.resolve(JobRequest(method: "simmim", totalSteps: 100, batchSize: 8))
        #expect(paper.preset == "simmim_swin_base_patch4_window6_192" && paper.training.clipGrad == 5)
        #expect(paper.training.baseLR == 2e-4 * 8 / 512)
        #expect(try JobConfig.decode(c.json()) == c)
    }

    @Test func overridesSetModelAndTrainingFields() throws {
        let c = try JobConfig.resolve(JobRequest(method: "mae", preset: "tiny", overrides: [
            "mask_ratio": .number(0.5), "base_lr": .number(0.002), "clip_grad": .number(1), "checkpoint_every": .number(7),
        ]))
        #expect(c.model.maskRatio == 0.5 && c.training.baseLR == 0.002 && c.training.clipGrad == 1 && c.training.checkpointEvery == 7)
        let noClip = try JobConfig.resolve(JobRequest(method: "simmim", preset: "tiny", overrides: ["clip_grad": .null]))
        #expect(noClip.training.clipGrad == nil)
    }

    func fields(_ r: JobRequest, datasets: Set<String> = ["synthetic"]) -> [String] {
        do { _ = try JobConfig.resolve(r, datasetExists: datasets.contains); return [] } catch { return error.errors.map(\.field) }
    }

    @Test func everyProblemNamesItsField() {
        #expect(fields(JobRequest(method: "byol")) == ["method"])
        #expect(fields(JobRequest(method: "mae", preset: "huge")) == ["preset"])
        #expect(fields(JobRequest(method: "mae", dataset: "imagenet")) == ["dataset"])
        #expect(fields(JobRequest(method: "mae", totalSteps: 0, batchSize: 4)) == ["total_steps"])
        #expect(fields(JobRequest(method: "mae", batchSize: 0)).contains("batch_size"))
        #expect(fields(JobRequest(method: "mae", preset: "tiny", overrides: ["mask_ratio": .string("high")])) == ["overrides.mask_ratio"])
        #expect(fields(JobRequest(method: "mae", preset: "tiny", overrides: ["colour": .number(1)])) == ["overrides.colour"])
        #expect(fields(JobRequest(method: "mae", preset: "tiny", overrides: ["patch_size": .number(5)])).contains("overrides.patch_size"))
        #expect(fields(JobRequest(method: "simmim", preset: "tiny", overrides: ["window_size": .number(3)])) == ["overrides.window_size"])
        #expect(fields(JobRequest(method: "mae", preset: "tiny", overrides: ["base_lr": .number(-1), "method": .string("simmim")]))
            == ["overrides.base_lr", "overrides.method"])
    }
}

@Suite("Trainer pool", .serialized) struct TrainerPoolTests {
    @Test func aTinyJobTrainsToTheEndWithMetricsAndCheckpoints() async throws {
        let h = try Harness()
        let sub = h.bus.subscribe(jobID: nil)
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(steps: 23, overrides: ["checkpoint_every": .number(5), "keep_checkpoints": .number(2)])
        let job = try await h.wait(id, for: [.succeeded, .failed])
        #expect(job.state == .succeeded && job.step == 23 && job.error == nil && job.finishedAt != nil)
        let metrics = try h.store.metrics(jobID: id)
        #expect(metrics.map(\.step) == Array(1...23))
        #expect(metrics.allSatisfy { $0.loss.isFinite && $0.lr >= 0 && $0.wallTimeS > 0 })
        // The last two periodic checkpoints and the final one; pruned files are gone.
        let cks = try h.store.checkpoints(jobID: id)
        #expect(cks.map(\.step) == [15, 20, 23] && cks.last!.isFinal)
        for ck in cks {
            let bytes = [UInt8](try Data(contentsOf: h.pool.options.checkpoints.url(ck.path)))
            #expect(Checksum.sha256Hex(bytes) == ck.sha256 && Int64(bytes.count) == ck.bytes)
            let decoded = try Checkpoint.decode(bytes)
            #expect(decoded.step == ck.step && decoded.config.training.totalSteps == 23)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: h.dir.appendingPathComponent("checkpoints/\(id)").path)
        #expect(files.count == 3)
        h.bus.unsubscribe(sub)
        var states: [JobState] = [], metricSteps: [Int] = []
        for await e in sub.events {
            if case .state(_, let s, _, _) = e { states.append(s) }
            if case .metric(let m) = e { metricSteps.append(m.step) }
        }
        #expect(states == [.running, .succeeded] && metricSteps == Array(1...23))
    }

    @Test func deletingAJobRemovesEveryFileItWrote() async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(steps: 6, overrides: ["checkpoint_every": .number(2)])
        try await h.wait(id, for: [.succeeded])
        let folder = h.pool.options.checkpoints.url(id)
        // A file a crash left unrecorded goes too.
        try Data([1]).write(to: folder.appendingPathComponent("step-00000099.safetensors.tmp"))
        let recorded = try h.store.checkpoints(jobID: id).count
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        #expect(recorded == 3 && files.count == recorded + 1)
        try h.pool.delete(id)
        let row = try h.store.job(id)
        #expect(!FileManager.default.fileExists(atPath: folder.path) && row == nil)
        #expect(throws: StoreError.self) { try h.pool.delete(id) }
    }

    /// The acceptance test of resume: 40 steps straight equal 20, pause, resume, 20 more, for
    /// both methods, with images from the real loader (shuffles and augmentations included).
    @Test(arguments: ["mae", "simmim"]) func resumedCurveEqualsTheUninterruptedOne(method: String) async throws {
        let pauseAt = Mutex<(id: String?, pool: TrainerPool?)>((nil, nil))
        let h = try Harness(realData: true, observer: { id, step, _, _ in
            let (target, pool) = pauseAt.withLock { ($0.id, $0.pool) }
            if id == target && step == 20 { _ = try? pool?.pause(id) }
        })
        pauseAt.withLock { $0.pool = h.pool }
        try h.pool.start()
        defer { h.pool.shutdown() }
        let overrides: [String: JSONValue] = ["checkpoint_every": .number(7)]
        let straight = try h.submit(method, steps: 40, overrides: overrides)
        try await h.wait(straight, for: [.succeeded])
        let interrupted = try h.submit(method, steps: 40, overrides: overrides)
        pauseAt.withLock { $0.id = interrupted }
        let paused = try await h.wait(interrupted, for: [.paused, .succeeded])
        #expect(paused.state == .paused && paused.step == 20)
        #expect(try h.store.latestCheckpoint(jobID: interrupted)?.step == 20)
        pauseAt.withLock { $0.id = nil }
        try h.pool.resume(interrupted)
        try await h.wait(interrupted, for: [.succeeded])
        let a = try h.store.metrics(jobID: straight).map(\.loss), b = try h.store.metrics(jobID: interrupted).map(\.loss)
        #expect(a.count == 40 && a == b, "first difference at step \((a.indices.first { a[$0] != b[$0] } ?? -1) + 1)")
        // The final weights and both AdamW moments are the same to the bit.
        let ends = try [straight, interrupted].map { id in
            let row = try #require(try h.store.latestCheckpoint(jobID: id))
            return try Checkpoint.decode([UInt8](Data(contentsOf: h.pool.options.checkpoints.url(row.path))))
        }
        #expect(ends[0].step == 40 && ends[1].step == 40)
        for (name, w) in ends[0].weights { #expect(w.scalars == ends[1].weights[name]?.scalars, "weight \(name)") }
        for (name, m) in ends[0].moments { #expect(m.scalars == ends[1].moments[name]?.scalars, "moment \(name)") }
        #expect(ends[0].weights.count == ends[1].weights.count && ends[0].moments.count == ends[1].moments.count)
    }

    @Test func aNonFiniteLossFailsTheJobAndThePoolGoesOn() async throws {
        // Seed 1's images turn NaN at step 3; seed 2's never do. One pool runs both, in order.
        let h = try Harness(poisoned: [1: [3]])
        let bad = try h.submit(steps: 10, seed: 1)
        let good = try h.submit(steps: 5, seed: 2)
        try h.pool.start()
        defer { h.pool.shutdown() }
        let failed = try await h.wait(bad, for: [.failed, .succeeded])
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("step 3") == true, "\(failed.error ?? "no error")")
        #expect(try h.store.metricCount(jobID: bad) == 2)
        // The same pool, with the same slot, goes on to train the next job to the end.
        #expect(try await h.wait(good, for: [.succeeded, .failed]).state == .succeeded)
        #expect(try h.store.metricCount(jobID: good) == 5)
        #expect(h.pool.aliveSlots == 1)
    }

    @Test func cancelQueuedAndRunningJobs() async throws {
        let h = try Harness()
        let running = try h.submit(steps: 100_000)
        let queued = try h.submit(steps: 10)
        try h.pool.start()
        defer { h.pool.shutdown() }
        try await h.wait(running, for: [.running])
        #expect(throws: StoreError.self) { try h.pool.pause(queued) }
        #expect(try h.pool.cancel(queued).state == .cancelled)
        try h.pool.cancel(running)
        let done = try await h.wait(running, for: [.cancelled])
        #expect(done.step < 100_000)
        #expect(throws: StoreError.self) { try h.pool.cancel(running) }
        #expect(throws: StoreError.self) { try h.pool.resume(running) }
    }

    /// A cancel honoured at any moment after submission: queued, mid-claim or running.
    @Test func aCancelRightAfterSubmissionIsNeverLost() async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        var ids: [String] = []
        for _ in 0..<200 {
            let id = try h.submit(steps: 1_000)
            try h.pool.cancel(id)
            ids.append(id)
        }
        var ends: [JobRecord] = []
        for id in ids { ends.append(try await h.wait(id, for: [.cancelled, .succeeded, .failed])) }
        #expect(ends.filter { $0.state != .cancelled }.map(\.id) == [])
        #expect(ends.allSatisfy { $0.step < 1_000 })
    }

    /// The narrowest window, forced: the cancel lands after the claim, before the slot registers the job.
    @Test func aCancelBetweenClaimAndStartIsHonoured() async throws {
        let pool = Mutex<TrainerPool?>(nil)
        let h = try Harness(claimed: { id in _ = try? pool.withLock { $0 }?.cancel(id) })
        pool.withLock { $0 = h.pool }
        let id = try h.submit(steps: 1_000)
        try h.pool.start()
        defer { h.pool.shutdown() }
        let end = try await h.wait(id, for: [.cancelled, .succeeded, .failed])
        #expect(end.state == .cancelled && end.step < 1_000, "\(end.state) at step \(end.step)")
    }

    /// A cancel written by another process sharing the database (another API node) reaches the
    /// trainer within a step: the request lives on the job's row, not in this pool's memory.
    @Test func aCancelFromAnotherProcessIsHonoured() async throws {
        let h = try Harness()
        let id = try h.submit(steps: 100_000)
        try h.pool.start()
        defer { h.pool.shutdown() }
        try await h.wait(id, for: [.running])
        let other = try Store(path: h.store.path, migrations: h.store.migrations)
        guard case .requested = try other.requestStop(id, .cancel) else { Issue.record("not requested"); return }
        let end = try await h.wait(id, for: [.cancelled, .succeeded, .failed])
        #expect(end.state == .cancelled && end.step < 100_000)
    }

    /// `--trainer-nice`: the slot's thread trains at the given nice value.
    @Test func aSlotTrainsAtItsNiceValue() async throws {
        let seen = Mutex<Set<Int32>>([])
        let h = try Harness(nice: 5, observer: { _, _, _, _ in seen.withLock { _ = $0.insert(ThreadPriority.current) } })
        let id = try h.submit(steps: 3)
        try h.pool.start()
        defer { h.pool.shutdown() }
        try await h.wait(id, for: [.succeeded])
        #expect(seen.withLock { $0 } == [5])
    }

    @Test func shutdownCheckpointsAndRequeues() async throws {
        let h = try Harness()
        let id = try h.submit(steps: 100_000, overrides: ["checkpoint_every": .number(100_000)])
        try h.pool.start()
        try await h.wait(id, for: [.running])
        try await offThread { while try h.store.metricCount(jobID: id) < 3 { Thread.sleep(forTimeInterval: 0.01) } }
        h.pool.shutdown()
        let job = try #require(try h.store.job(id))
        #expect(job.state == .queued)
        let ck = try #require(try h.store.latestCheckpoint(jobID: id))
        #expect(ck.step >= 3 && ck.step == job.step)
        #expect(h.pool.aliveSlots == 0)
    }

    @Test func aDamagedCheckpointFallsBackToAnOlderOne() async throws {
        let h = try Harness()
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(steps: 30, overrides: ["checkpoint_every": .number(10)])
        try await h.wait(id, for: [.succeeded])
        let run = TrainingRun(job: try #require(try h.store.job(id)), config: try JobConfig.decode(try h.store.job(id)!.configJSON),
                              store: h.store, bus: h.bus, options: h.pool.options, lease: nil, stopRequested: { nil })
        let final = try #require(try h.store.latestCheckpoint(jobID: id))
        try Data("garbage".utf8).write(to: h.pool.options.checkpoints.url(final.path))
        #expect(try run.loadLatestCheckpoint()?.step == 20)
    }
}

@Suite("Event bus") struct EventBusTests {
    @Test func aSlowSubscriberIsDroppedNotWaitedFor() async {
        let bus = EventBus(bufferSize: 4)
        let slow = bus.subscribe(jobID: "a"), other = bus.subscribe(jobID: "b")
        for step in 1...10 {
            bus.publish(.metric(MetricRecord(jobID: "a", step: step, loss: 1, lr: 1, imagesPerS: nil, wallTimeS: 0)))
        }
        var received: [Int] = []
        for await e in slow.events { if case .metric(let m) = e { received.append(m.step) } }
        // It got what fitted, then its stream ended so it can replay the rest from the database.
        #expect(received == [1, 2, 3, 4])
        #expect(bus.subscriberCount == 1)
        bus.unsubscribe(other)
        #expect(bus.subscriberCount == 0)
    }
}
