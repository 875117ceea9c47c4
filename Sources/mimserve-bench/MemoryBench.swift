import Config
import ArgumentParser
import Foundation
import ImageData
import Models
import Store
import Trainer

/// `mimserve-bench memory`: does a long-running trainer pool keep the memory of the jobs it has
/// run? Trains a sequence of jobs of different methods, sizes and batches through one real pool
/// and reports the process's resident memory once each job has ended and the pool is idle.
struct MemoryBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory", abstract: "Idle resident memory after each of a sequence of mixed jobs.")

    @Option(help: "Jobs to run.") var jobs = 20
    @Option(help: "Every n-th job is a paper-scale one (batch 2, 2 steps); 0 for none.") var paperEvery = 5

    func run() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mimserve-memory-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(path: dir.appendingPathComponent("mimserve.sqlite").path, migrations: MigrationSet.locate())
        let pool = TrainerPool(store: store, bus: EventBus(), options: TrainerOptions(
            slots: 1, checkpoints: CheckpointDirectory(root: dir.appendingPathComponent("checkpoints")), dataSource: ImageDataSource.make(registry: DatasetRegistry()), log: { _ in }))
        try pool.start()
        defer { pool.shutdown() }
        let tiny = Presets.all.filter(\.isTiny), paper = Presets.all.filter { !$0.isTiny }
        let start = Report.residentMB()
        var rows: [Record] = []
        for k in 0..<jobs {
            let isPaper = paperEvery > 0 && k % paperEvery == paperEvery - 1
            let preset = isPaper ? paper[(k / paperEvery) % paper.count] : tiny[k % tiny.count]
            let batch = isPaper ? 2 : [4, 8, 16, 32][k % 4]
            let steps = isPaper ? 2 : 20
            let config = try JobConfig.resolve(JobRequest(method: preset.model.method.rawValue, preset: preset.name,
                                                          totalSteps: steps, batchSize: batch, seed: UInt64(k)))
            let id = try store.submit(NewJob(method: config.method.rawValue, preset: config.preset, configJSON: config.json(),
                                             datasetID: config.dataset, totalSteps: steps)).job.id
            let releases = pool.memoryReleases
            pool.notify()
            // Until the job has ended and the idle pool has given its memory back.
            while try store.job(id)?.state.isTerminal != true || pool.memoryReleases == releases { Thread.sleep(forTimeInterval: 0.01) }
            var r = Record()
            r["suite"] = "memory"; r["case"] = "job_\(k + 1)"; r["preset"] = preset.name; r["batch"] = batch
            r["state"] = try store.job(id)?.state.rawValue ?? "?"
            r["idle_rss_mb"] = Report.residentMB()
            r["peak_rss_mb"] = Report.peakRSSMB()
            rows.append(r)
            Report.emit(r)
        }
        var summary = Record()
        summary["suite"] = "memory"; summary["case"] = "summary"; summary["jobs"] = jobs
        summary["start_rss_mb"] = start
        summary["first_idle_rss_mb"] = rows.first?["idle_rss_mb"] ?? Double.nan
        summary["last_idle_rss_mb"] = rows.last?["idle_rss_mb"] ?? Double.nan
        summary["peak_rss_mb"] = Report.peakRSSMB()
        Report.emit(summary)
        Report.table(rows + [summary], columns: ["case", "preset", "batch", "state", "idle_rss_mb", "peak_rss_mb",
                                                 "start_rss_mb", "first_idle_rss_mb", "last_idle_rss_mb"])
    }
}
