import Config
import Foundation
import ImageData
import Models
import NN
import Store
import TensorCore
@testable import Trainer
import TestSupport

/// Batches that depend only on (seed, step), like the real loader: a test double that keeps
/// the trainer's tests independent of image decoding.
final class SeededBatches: TrainingBatches {
    let config: JobConfig
    var step: Int
    /// Steps (1-based) whose images are NaN, to drive a job into a non-finite loss.
    let poisonedSteps: Set<Int>

    init(config: JobConfig, startStep: Int, poisonedSteps: Set<Int> = []) {
        self.config = config
        self.step = startStep
        self.poisonedSteps = poisonedSteps
    }

    func next() throws -> TrainingBatch {
        var g = RandomGenerator(seed: config.training.seed &* 1_000_003 &+ UInt64(step))
        let s = config.model.imageSize
        let images = Init.normal([config.training.batchSize, 3, s, s], std: 1, rng: &g)
        let labels = config.finetune.map { f in (0..<config.training.batchSize).map { _ in Int(g.next() % UInt64(f.classes)) } }
        step += 1
        if poisonedSteps.contains(step) { images.pointer[0] = .nan }
        return TrainingBatch(images: images, labels: labels, waitSeconds: 0)
    }

    var heldOut: (any ImageDataset)? { SyntheticDataset(count: 20, imageSize: config.model.imageSize, seed: 9) }

    func close() {}
}

struct Harness: Sendable {
    let dir: URL
    let store: Store
    let bus: EventBus
    let pool: TrainerPool

    /// `realData`: batches from ImageData's loader over a small synthetic dataset instead of the seeded test double.
    /// `poisoned`: for a job's seed, the steps whose images are NaN.
    init(slots: Int = 1, nice: Int32 = 0, poisoned: [UInt64: Set<Int>] = [:], realData: Bool = false, syntheticCount: Int = 200,
         observer: (@Sendable (String, Int, Double, Double) -> Void)? = nil,
         claimed: (@Sendable (String) -> Void)? = nil) throws {
        dir = Scratch.url("mimserve-trainer")
        store = try Store(path: dir.appendingPathComponent("mimserve.sqlite").path, migrations: MigrationSet.locate())
        bus = EventBus()
        var registryConfig = DatasetRegistry.Configuration()
        registryConfig.syntheticCount = syntheticCount
        registryConfig.syntheticImageSize = 40
        let real = ImageDataSource.make(registry: DatasetRegistry(configuration: registryConfig))
        var options = TrainerOptions(slots: slots, checkpoints: CheckpointDirectory(root: dir.appendingPathComponent("checkpoints")), dataSource: { config, start in
            realData ? try real(config, start) : SeededBatches(config: config, startStep: start,
                                                                           poisonedSteps: poisoned[config.training.seed] ?? [])
        }, log: { _ in })
        options.stepObserver = observer
        options.claimed = claimed
        options.nice = nice
        options.metricsBatchSteps = 8
        pool = TrainerPool(store: store, bus: bus, options: options)
    }

    /// Submits a tiny job with the given overrides.
    func submit(_ method: String = "mae", steps: Int, seed: UInt64 = 3, batch: Int = 4, overrides: [String: JSONValue] = [:],
                initFrom: CheckpointReference? = nil, task: String? = nil) throws -> String {
        let config = try JobConfig.resolve(JobRequest(method: method, preset: "tiny", totalSteps: steps, batchSize: batch, seed: seed,
                                                      task: task, overrides: overrides, initFrom: initFrom),
                                           datasetExists: { $0 == "synthetic" },
                                           datasetClasses: { $0 == "synthetic" ? SyntheticDataset.classNames.count : nil },
                                           findCheckpoint: { ref in
                                               guard let jobID = ref.job, let job = try? store.job(jobID), let c = try? JobConfig.decode(job.configJSON) else {
                                                   return .failure(FieldError("init.job", "no job"))
                                               }
                                               let step = ref.step ?? (try? store.latestCheckpoint(jobID: jobID)?.step) ?? 1
                                               return .success(InitCheckpoint(preset: c.preset, model: c.model, task: c.jobTask, step: step))
                                           })
        let id = try store.submit(NewJob(method: method, preset: config.preset, configJSON: config.json(),
                                         datasetID: config.dataset, totalSteps: steps)).job.id
        pool.notify()
        return id
    }

    /// Each job once it has ended (succeeded, failed or cancelled).
    @discardableResult
    func ended(_ ids: [String], timeout: TimeInterval) async throws -> [JobRecord] {
        var jobs: [JobRecord] = []
        for id in ids { jobs.append(try await wait(id, for: [.succeeded, .failed, .cancelled], timeout: timeout)) }
        return jobs
    }

    /// The job once it is in one of `states` (or fails the test after `timeout`), polled off the
    /// cooperative pool (`offThread`): a test waiting there for a job would hold one of its
    /// threads, a thread per core, which the live servers other suites run in this process need.
    @discardableResult
    func wait(_ id: String, for states: Set<JobState>, timeout: TimeInterval = 60) async throws -> JobRecord {
        let store = store
        return try await offThread {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if let job = try store.job(id), states.contains(job.state) { return job }
                Thread.sleep(forTimeInterval: 0.01)
            }
            throw TimeoutError(description: "job \(id) did not reach \(states) in \(timeout) s (is \(String(describing: try store.job(id)?.state)))")
        }
    }
}

struct TimeoutError: Error, CustomStringConvertible { let description: String }
