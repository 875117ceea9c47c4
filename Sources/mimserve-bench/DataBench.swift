import Config
import ArgumentParser
import Foundation
import ImageData
import Models
import NN
import Optim
import TensorCore

/// `mimserve-bench data`: real training steps of the tiny presets fed by the `Loader`, and
/// the share of each step spent waiting for data (`data_wait_ratio`, target < 5%); then the
/// loader alone, as fast as it can go (images/s).
struct DataBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Loader throughput and data wait inside training steps of the tiny presets.")

    @Option(help: "Methods whose tiny preset to train.") var methods = ["mae", "simmim"]
    @Option(help: "Batch size.") var batch = 16
    @Option(help: "Timed training steps per method.") var steps = 100
    @Option(help: "Warm-up steps (not timed).") var warmup = 3
    @Option(help: "Loader threads.") var workers = 1
    @Option(help: "Batches made ahead.") var prefetch = 4
    @Option(help: "Synthetic images' side in pixels (cropped and resized to the preset's size).") var sourceSize = 64
    @Option(help: "Batches timed for the loader alone.") var loaderBatches = 100
    @Option(help: "Compute thread count (default: all cores).") var threads: Int?

    func run() throws {
        if let threads { ComputeThreads.set(threads) }
        let dataset = SyntheticDataset(count: 10_000, imageSize: sourceSize, seed: 0)
        var rows: [Record] = []
        for name in methods {
            guard let method = Method(rawValue: name) else {
                throw ValidationError("unknown method '\(name)'; choose from \(Method.allCases.map(\.rawValue))")
            }
            let r = try trainingCase(try Presets.resolve(method: method, preset: "tiny"), dataset: dataset)
            Report.emit(r)
            rows.append(r)
        }
        let loaderRow = try loaderCase(dataset, imageSize: 32)
        Report.emit(loaderRow)
        rows.append(loaderRow)
        Report.table(rows, columns: ["case", "batch", "workers", "threads", "ms_per_step", "images_per_s",
                                     "data_wait_ms", "data_wait_ratio"])
    }

    private func trainingCase(_ preset: Preset, dataset: SyntheticDataset) throws -> Record {
        let model = try ModelRegistry.make(preset.model, seed: 0)
        let recipe = preset.recipe
        let opt = AdamW(parameters: model.namedParameters(), weightDecay: recipe.weightDecay,
                        betas: (recipe.beta1, recipe.beta2), noDecay: model.excludedFromWeightDecay)
        let loader = try Loader(dataset: dataset, batchSize: batch, imageSize: preset.model.imageSize, seed: 1,
                                workers: workers, prefetch: prefetch)
        defer { loader.close() }
        var rng = RandomGenerator(seed: 2)
        var waits: [Double] = [], totals: [Double] = []
        for i in 0..<(warmup + steps) {
            let start = DispatchTime.now().uptimeNanoseconds
            let data = try loader.next()
            let loss = model.trainingLoss(data.images, mask: model.sampleMask(batch: batch, ratio: nil, rng: &rng))
            try opt.minimize(loss, lr: 1e-4, clipGrad: recipe.clipGrad)
            if i >= warmup {
                waits.append(data.dataWaitSeconds)
                totals.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
        }
        let ms = median(totals) * 1000
        var r = Record()
        r["suite"] = "data"; r["case"] = "\(preset.model.method.rawValue)/\(preset.name)"
        r["method"] = preset.model.method.rawValue; r["preset"] = preset.name
        r["batch"] = batch; r["threads"] = ComputeThreads.count; r["workers"] = workers; r["steps"] = steps
        r["ms_per_step"] = ms
        r["images_per_s"] = Double(batch * steps) / totals.reduce(0, +)
        r["data_wait_ms"] = waits.reduce(0, +) / Double(steps) * 1000
        r["data_wait_ratio"] = waits.reduce(0, +) / totals.reduce(0, +)
        // Steps that found their batch not ready (a wait over 0.1 ms), and the longest wait.
        r["stalled_steps"] = waits.filter { $0 > 1e-4 }.count
        r["max_wait_ms"] = (waits.max() ?? 0) * 1000
        r["peak_rss_mb"] = Report.peakRSSMB()
        return r
    }

    /// The loader with nothing else running: how many images per second it can deliver.
    private func loaderCase(_ dataset: SyntheticDataset, imageSize: Int) throws -> Record {
        let loader = try Loader(dataset: dataset, batchSize: batch, imageSize: imageSize, seed: 3, workers: workers,
                                prefetch: prefetch)
        defer { loader.close() }
        _ = try loader.next()
        let seconds = timed { for _ in 0..<loaderBatches { _ = try? loader.next() } }
        var r = Record()
        r["suite"] = "data"; r["case"] = "loader/synthetic_\(sourceSize)px_to_\(imageSize)"
        r["batch"] = batch; r["workers"] = workers; r["steps"] = loaderBatches
        r["ms_per_step"] = seconds / Double(loaderBatches) * 1000
        r["images_per_s"] = Double(batch * loaderBatches) / seconds
        return r
    }
}
