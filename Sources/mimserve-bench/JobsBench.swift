import Config
import ArgumentParser
import Foundation
import ImageData
import Store
import Trainer

/// `mimserve-bench jobs`: what bookkeeping (batched metric rows, atomic checkpoints with
/// sha256, progress on the job row) costs a tiny job run by the real trainer pool, against
/// the same job with bookkeeping off. Rounds alternate the two so drift hits both.
struct JobsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "Trainer-pool steps/s with and without metrics and checkpoint writes.")

    @Option(help: "Method of the tiny job.") var method = "mae"
    @Option(help: "Steps per job.") var steps = 600
    @Option(help: "Batch size.") var batch = 16
    @Option(help: "Checkpoint every this many steps (bookkeeping on).") var checkpointEvery = 100
    @Option(help: "Rounds (each runs both variants; medians reported).") var rounds = 3
    @Option(help: "Nice value of the training threads (the server's --trainer-nice).") var nice: Int32 = 0

    func run() throws {
        var on: [Double] = [], off: [Double] = []
        for _ in 0..<rounds {
            off.append(try stepsPerSecond(bookkeeping: false))
            on.append(try stepsPerSecond(bookkeeping: true))
        }
        var rows: [Record] = []
        for (name, values) in [("bookkeeping_off", off), ("bookkeeping_on", on)] {
            var r = Record()
            r["suite"] = "jobs"; r["case"] = name; r["method"] = method; r["batch"] = batch; r["steps"] = steps
            r["steps_per_s"] = median(values)
            r["images_per_s"] = median(values) * Double(batch)
            r["ms_per_step"] = 1000 / median(values)
            r["checkpoint_every"] = name == "bookkeeping_on" ? checkpointEvery : 0
            rows.append(r)
        }
        rows[1]["bookkeeping_cost"] = 1 - median(on) / median(off)
        rows.forEach(Report.emit)
        Report.table(rows, columns: ["case", "method", "batch", "steps", "steps_per_s", "ms_per_step", "checkpoint_every", "bookkeeping_cost"])
    }

    /// One job through a fresh store and pool; steps/s over the training part of the job.
    func stepsPerSecond(bookkeeping: Bool) throws -> Double {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mimserve-jobs-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(path: dir.appendingPathComponent("mimserve.sqlite").path, migrations: MigrationSet.locate())
        var options = TrainerOptions(slots: 1, checkpoints: CheckpointDirectory(root: dir.appendingPathComponent("checkpoints")), dataSource: ImageDataSource.make(registry: DatasetRegistry()), log: { _ in })
        options.bookkeeping = bookkeeping
        options.nice = nice
        let pool = TrainerPool(store: store, bus: EventBus(), options: options)
        let config = try JobConfig.resolve(JobRequest(method: method, preset: "tiny", totalSteps: steps, batchSize: batch, seed: 1,
                                                      overrides: ["checkpoint_every": .number(Double(checkpointEvery))]))
        let id = try store.submit(NewJob(method: method, preset: config.preset, configJSON: config.json(), datasetID: config.dataset,
                                         totalSteps: steps)).job.id
        try pool.start()
        defer { pool.shutdown() }
        while try store.job(id)?.state.isTerminal != true { Thread.sleep(forTimeInterval: 0.005) }
        let job = try store.job(id)!
        guard job.state == .succeeded, let started = job.startedAt, let finished = job.finishedAt else {
            throw ValidationError("the benchmark job ended \(job.state.rawValue): \(job.error ?? "")")
        }
        return Double(steps) / finished.timeIntervalSince(started)
    }
}
