import ArgumentParser
import Config
import Dispatch
import Foundation
import ImageData
import Models
import Store
import TensorCore
import Trainer

/// `mimserve-bench infer`: reconstruction and features of paper-scale presets, the model alone
/// and end to end (JPEG bytes in: decode, resize, model, PNG strip or feature rows out, through
/// the server's `InferenceService` and a real checkpoint), batch 1 and 8.
struct InferBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer", abstract: "Inference latency: model alone and end to end, reconstruct and features.")

    @Option(help: "Comma-separated method:preset pairs (default: MAE and SimMIM at paper scale).")
    var presets = "mae:default,simmim:default"
    @Option(help: "Timed runs per case (median reported).") var runs = 5
    @Option(help: "Thread count (default: all cores).") var threads: Int?
    @Option(help: "A JPEG or PNG to send (default: Public/samples/cat.jpg).") var image: String?
    @Option(help: "The job's precision, which the service serves in: fp32, or bf16 (needs AVX512_BF16 or AMX).") var precision = Precision.fp32
    @Flag(help: "Also time as many more model passes per kind of work (GEMM, attention, norm, activation, memory movement, …).")
    var profile = false
    @Flag(help: "Also time each GEMM shape of a model pass in OpenBLAS, oneDNN's sgemm and oneDNN's matmul primitive (as train --kernels does).")
    var kernels = false

    func run() throws {
        guard Precision.runnable.contains(precision) else {
            throw ValidationError("this CPU runs \(Precision.runnable.map(\.rawValue)) only: bf16 needs AVX512_BF16 or AMX (or MIMSERVE_BF16_EMULATE=1 for memory, not speed)")
        }
        if let threads { ComputeThreads.set(threads) }
        let photo = try [UInt8](Data(contentsOf: URL(fileURLWithPath: image ?? Self.samplePath())))
        var rows: [Record] = [], profiles: [Record] = [], kernelRows: [Record] = []
        for pair in presets.split(separator: ",") {
            let parts = pair.split(separator: ":").map(String.init)
            guard parts.count == 2, let method = Method(rawValue: parts[0]) else {
                throw ValidationError("--presets takes method:preset pairs, got '\(pair)'")
            }
            let preset = try Presets.resolve(method: method, preset: parts[1])
            let (measured, profiled, compared) = try measure(preset, photo: photo)
            rows += measured
            profiles += profiled
            kernelRows += compared
        }
        rows.forEach(Report.emit)
        Report.table(rows, columns: ["case", "task", "precision", "batch", "model_ms", "end_to_end_ms", "end_to_end_per_image_ms", "passes_per_run", "decode_ms", "png_ms",
                                     "png_bytes", "peak_rss_mb"])
        if profile {
            profiles.forEach(Report.emit)
            Report.table(profiles, columns: ["case", "task", "batch", "kind", "ms_per_step", "share", "calls_per_step"])
        }
        if kernels {
            kernelRows.forEach(Report.emit)
            Report.table(kernelRows, columns: ["case"] + KernelComparison.columns)
        }
    }

    static func samplePath() -> String {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return here.appendingPathComponent("Public/samples/cat.jpg").path
    }

    /// One preset: a one-step job makes a real checkpoint, which the service then serves.
    /// Returns the timing rows, with `--profile` the model passes' time per kind of work, and
    /// with `--kernels` their GEMM shapes timed in each kernel.
    func measure(_ preset: Preset, photo: [UInt8]) throws -> ([Record], [Record], [Record]) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mimserve-infer-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(path: dir.appendingPathComponent("mimserve.sqlite").path, migrations: MigrationSet.locate())
        let checkpoints = CheckpointDirectory(root: dir.appendingPathComponent("checkpoints"))
        let pool = TrainerPool(store: store, bus: EventBus(), options: TrainerOptions(
            slots: 1, checkpoints: checkpoints, dataSource: ImageDataSource.make(registry: DatasetRegistry()), log: { _ in }))
        let config = try JobConfig.resolve(JobRequest(method: preset.model.method.rawValue, preset: preset.name, totalSteps: 1,
                                                      batchSize: 1, seed: 1, overrides: ["precision": .string(precision.rawValue)]))
        let id = try store.submit(NewJob(method: config.method.rawValue, preset: config.preset, configJSON: config.json(),
                                         datasetID: config.dataset, totalSteps: 1)).job.id
        try pool.start()
        while try store.job(id)?.state.isTerminal != true { Thread.sleep(forTimeInterval: 0.01) }
        pool.shutdown()
        guard try store.job(id)?.state == .succeeded else { throw ValidationError("the checkpoint job failed: \(try store.job(id)?.error ?? "")") }
        BufferPool.shared.trim()

        // The server's defaults: two slots, eight images per batched pass.
        let service = InferenceService(store: store, checkpoints: checkpoints, cacheSize: 1)
        let model = try ModelRegistry.make(preset.model, seed: 0)
        let size = preset.model.imageSize
        // The parts of a reconstruction around the model: decoding the upload, encoding the strip.
        let sample = blocking { try await service.reconstruct(jobID: id, step: nil, image: photo, maskRatio: nil, seed: 1) }
        let strip = try ImageCodec.decode(sample.png)
        let decodeMS = time { _ = try? ImageCodec.decode(photo) }
        // As the service encodes one strip: in pieces on all compute threads.
        let pngMS = time { _ = try? PNGEncoder.encode(strip, fast: true, parts: ComputeThreads.count) }
        let compactPNGMS = time { _ = try? PNGEncoder.encode(strip) }       // libpng's default, for comparison
        let compactPNGBytes = try PNGEncoder.encode(strip).count
        var rows: [Record] = [], profiles: [Record] = [], kernelRows: [Record] = []
        for batch in [1, 8] {
            var rng = RandomGenerator(seed: 2)
            let x = Tensor(zeros: [batch, 3, size, size])
            for i in 0..<x.count { x.pointer[i] = rng.normal() }
            let mask = model.sampleMask(batch: batch, ratio: nil, rng: &rng)
            let bf16 = precision == .bf16
            let modelPasses: [(task: String, pass: () -> Void)] = [
                ("reconstruct", { _ = BF16.gemms(bf16) { model.reconstruct(x, mask: mask) } }),
                ("features", { _ = BF16.gemms(bf16) { model.features(x, pool: .mean) } }),
            ]
            let reconstructModel = time(modelPasses[0].pass), featuresModel = time(modelPasses[1].pass)
            // The API reconstructs one image per request: a batch of 8 is 8 requests sent at once,
            // each with its own seed, which the service batches.
            let before = service.batchCounts.batches
            let reconstructE2E = time {
                blocking {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for k in 0..<batch {
                            group.addTask { _ = try await service.reconstruct(jobID: id, step: nil, image: photo, maskRatio: nil, seed: UInt64(k)) }
                        }
                        try await group.waitForAll()
                    }
                }
            }
            let passes = Double(service.batchCounts.batches - before) / Double(runs + 1)
            let images = Array(repeating: photo, count: batch)
            let featuresE2E = time { _ = blocking { try await service.features(jobID: id, step: nil, images: images, pool: .mean) } }
            if profile {
                // Separate passes: the spans' clock reads must not touch the figures above.
                for (task, pass) in modelPasses {
                    var times: [Double] = []
                    let totals = Profiler.collect { times = (0..<runs).map { _ in timed(pass) } }
                    var base = Record()
                    base["case"] = "\(preset.model.method.rawValue)/\(preset.name)"; base["precision"] = precision.rawValue
                    profiles += StepProfile.records(StepProfile(totals: totals, steps: runs, stepSeconds: times.reduce(0, +) / Double(runs)),
                                                    base: base).map { r in
                        var r = r
                        r["task"] = task; r["batch"] = batch
                        return r
                    }
                }
            }
            if kernels {
                // Per pass, not per step: the "step" row sums one pass of each task.
                for (task, pass) in modelPasses {
                    let shapes = GEMMShapes.record { pass() }
                    let name = "\(preset.model.method.rawValue)/\(preset.name) \(task) b\(batch)"
                    kernelRows += KernelComparison.records(shapes, case: name, rounds: runs)
                }
            }
            for (task, modelMS, e2eMS) in [("reconstruct", reconstructModel, reconstructE2E), ("features", featuresModel, featuresE2E)] {
                var r = Record()
                r["suite"] = "infer"; r["case"] = "\(preset.model.method.rawValue)/\(preset.name)"; r["task"] = task
                r["batch"] = batch; r["threads"] = ComputeThreads.count; r["runs"] = runs; r["precision"] = precision == .bf16 && BF16.emulated ? "bf16 (emulated)" : precision.rawValue
                r["model_ms"] = modelMS
                r["end_to_end_ms"] = e2eMS
                r["end_to_end_per_image_ms"] = e2eMS / Double(batch)
                r["decode_ms"] = decodeMS
                if task == "reconstruct" {
                    r["passes_per_run"] = passes  // forward passes the requests took
                    r["png_ms"] = pngMS; r["png_bytes"] = sample.png.count
                    r["png_compact_ms"] = compactPNGMS; r["png_compact_bytes"] = compactPNGBytes
                }
                r["peak_rss_mb"] = Report.peakRSSMB()
                rows.append(r)
            }
        }
        return (rows, profiles, kernelRows)
    }

    /// Median milliseconds of `runs` runs after one warm-up run.
    func time(_ body: () -> Void) -> Double {
        body()
        return median((0..<runs).map { _ in timed(body) }) * 1000
    }
}

/// Waits for `body` on this thread (the benchmark is synchronous); a failure stops the benchmark.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> T {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, any Error>?
    Task {
        do { result = .success(try await body()) } catch { result = .failure(error) }
        done.signal()
    }
    done.wait()
    switch result! {
    case .success(let v): return v
    case .failure(let e): fatalError("inference failed: \(e)")
    }
}
