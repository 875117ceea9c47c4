import ArgumentParser
import Foundation
import Models
import NN
import Optim
import TensorCore

/// `mimserve-bench compare`: the papers' efficiency claims, reproduced on CPU.
///
/// - MixMAE against SimMIM on the same Swin (the MixMAE preset's encoder, built as a SimMIM
///   with SimMIM's masking and shifted windows): training FLOPs per image, encoder FLOPs per
///   image and images/s.
/// - ConvMAE against MAE at matched width (the MAE preset of the same scale: ViT-B/16 against
///   ConvMAE-B's 768-wide ViT stage; the tiny ViT D64 against the tiny ConvMAE's 64): images/s
///   and peak RSS.
///
/// Every case runs in its own child process (this executable with `--only`), so each peak RSS
/// is that case's own high-water mark. Ratios: `vs_simmim_speed` = images/s ÷ SimMIM's (> 1 is
/// faster), `vs_simmim_memory` = peak RSS ÷ SimMIM's (< 1 is leaner), `vs_simmim_flops` =
/// training FLOPs per image ÷ SimMIM's; `vs_mae_speed` and `vs_mae_memory` likewise.
struct CompareBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare", abstract: "MixMAE vs SimMIM (same Swin) and ConvMAE vs MAE (matched width).")

    @Option(help: "Scale: tiny (32 px test presets) or paper (224 px).") var scale = "tiny"
    @Option(help: "Batch size (default: 16 tiny, 2 paper).") var batch: Int?
    @Option(help: "Timed steps (median reported).") var steps = 5
    @Option(help: "Warm-up steps.") var warmup = 2
    @Option(help: "Thread count (default: all cores).") var threads: Int?
    @Option(help: "Rounds of all cases, interleaved; each case reports its median round (load noise).") var rounds = 1
    @Option(help: .hidden) var only: String?

    static let cases = ["simmim_same_swin", "mixmae", "mae_matched_width", "convmae"]

    func validate() throws {
        guard ["tiny", "paper"].contains(scale) else { throw ValidationError("scale must be tiny or paper, got \(scale)") }
        if let only, !Self.cases.contains(only) { throw ValidationError("unknown case \(only)") }
    }

    func run() throws {
        if let threads { ComputeThreads.set(threads) }
        let batch = batch ?? (scale == "tiny" ? 16 : 2)
        if let only {  // child: one case, one JSON line
            Report.emit(try Self.measure(only, scale: scale, batch: batch, warmup: warmup, steps: steps))
            return
        }
        let peak = SGEMMPeak.measure()
        var runs: [String: [Record]] = [:]
        for _ in 0..<max(rounds, 1) {
            for name in Self.cases { runs[name, default: []].append(try childRecord(name, batch: batch)) }
        }
        var rows: [String: Record] = [:]
        for (name, list) in runs {
            let sorted = list.sorted { ($0["ms_per_step"] as? Double ?? .nan) < ($1["ms_per_step"] as? Double ?? .nan) }
            var r = sorted[sorted.count / 2]
            r["rounds"] = list.count
            r["peak_gflops"] = peak
            if let g = r["gflops"] as? Double { r["peak_ratio"] = g / peak }
            rows[name] = r
        }
        func ratio(_ a: String, _ b: String, _ key: String) -> Double {
            guard let x = rows[a]?[key] as? Double, let y = rows[b]?[key] as? Double else { return .nan }
            return x / y
        }
        rows["mixmae"]!["vs_simmim_speed"] = ratio("mixmae", "simmim_same_swin", "images_per_s")
        rows["mixmae"]!["vs_simmim_memory"] = ratio("mixmae", "simmim_same_swin", "peak_rss_mb")
        rows["mixmae"]!["vs_simmim_flops"] = ratio("mixmae", "simmim_same_swin", "gflop_per_image")
        rows["convmae"]!["vs_mae_speed"] = ratio("convmae", "mae_matched_width", "images_per_s")
        rows["convmae"]!["vs_mae_memory"] = ratio("convmae", "mae_matched_width", "peak_rss_mb")
        rows["convmae"]!["vs_mae_flops"] = ratio("convmae", "mae_matched_width", "gflop_per_image")
        let ordered = Self.cases.map { rows[$0]! }
        for r in ordered { Report.emit(r) }
        Report.table(ordered, columns: ["case", "preset", "batch", "ms_per_step", "images_per_s", "gflop_per_image",
                                        "encoder_gflop_per_image", "gflops", "peak_ratio", "peak_rss_mb", "peak_tensor_mb",
                                        "vs_simmim_speed", "vs_simmim_memory", "vs_simmim_flops", "vs_mae_speed",
                                        "vs_mae_memory"])
    }

    /// Runs this executable with `--only name` and parses its JSON line.
    func childRecord(_ name: String, batch: Int) throws -> Record {
        let process = Process()
        process.executableURL = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        process.arguments = ["compare", "--only", name, "--scale", scale, "--batch", String(batch), "--steps", String(steps),
                             "--warmup", String(warmup), "--threads", String(threads ?? ComputeThreads.count)]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ValidationError("case \(name) failed (exit \(process.terminationStatus))")
        }
        var r = Record()
        for key in ["suite", "case", "preset", "method", "batch", "threads", "steps", "ms_per_step", "images_per_s", "gflops",
                    "gflop_per_image", "encoder_gflop_per_image", "peak_rss_mb", "peak_tensor_mb", "fresh_allocs_per_step"] {
            switch object[key] {
            case let s as String: r[key] = s
            case let n as NSNumber: r[key] = ["batch", "threads", "steps"].contains(key) ? n.intValue as Any : n.doubleValue as Any
            default: break
            }
        }
        return r
    }

    /// The configuration of a case at a scale.
    static func config(_ name: String, scale: String) throws -> (config: ModelConfig, recipe: Recipe, preset: String) {
        let alias = scale == "tiny" ? "tiny" : "default"
        switch name {
        case "mixmae", "simmim_same_swin":
            let mix = try Presets.resolve(method: .mixmae, preset: alias)
            guard name == "simmim_same_swin" else { return (mix.model, mix.recipe, mix.name) }
            // SimMIM on MixMAE's Swin: its own masking (r 0.6, units of the encoder stride), shifted
            // windows and L1 loss on the same image size, widths, depths, heads and window.
            var c = mix.model
            c.method = .simmim
            c.maskRatio = 0.6
            c.normPixLoss = false
            c.decoderDim = 0; c.decoderDepth = 0; c.decoderHeads = 0
            try c.validate()
            let simmim = try Presets.resolve(method: .simmim, preset: alias)
            return (c, simmim.recipe, "simmim_on_" + mix.name)
        case "convmae":
            let p = try Presets.resolve(method: .convmae, preset: alias)
            return (p.model, p.recipe, p.name)
        default:
            let p = try Presets.resolve(method: .mae, preset: alias)
            return (p.model, p.recipe, p.name)
        }
    }

    /// Training steps (forward, backward, clip, AdamW) of one case on random normalised images.
    static func measure(_ name: String, scale: String, batch: Int, warmup: Int, steps: Int) throws -> Record {
        let (config, recipe, preset) = try config(name, scale: scale)
        let model = try ModelRegistry.make(config, seed: 0)
        let opt = AdamW(parameters: model.namedParameters(), weightDecay: recipe.weightDecay,
                        betas: (recipe.beta1, recipe.beta2), noDecay: model.excludedFromWeightDecay)
        var rng = RandomGenerator(seed: 1)
        let images = Init.normal([batch, 3, config.imageSize, config.imageSize], std: 1, rng: &rng)
        func step() {
            let out = model.forward(images, mask: model.sampleMask(batch: batch, ratio: nil, rng: &rng))
            opt.zeroGrad()
            out.loss.backward()
            if let clip = recipe.clipGrad { _ = clipGradNorm(model.parameters, maxNorm: clip) }
            opt.step(lr: 1e-4)
        }
        for _ in 0..<warmup { step() }
        let allocs = BufferPool.shared.statistics.freshAllocations
        BufferPool.shared.resetPeak()
        FLOPCounter.reset()
        let times = (0..<steps).map { _ in timed(step) }
        let flops = Double(FLOPCounter.value) / Double(steps)
        let peakTensor = Double(BufferPool.shared.statistics.peakLiveFloats) * 4 / 1_048_576  // MB as in peak_rss_mb
        FLOPCounter.reset()
        _ = model.features(images, pool: .mean)
        let encoderFlops = Double(FLOPCounter.value)
        let ms = median(times) * 1000
        var r = Record()
        r["suite"] = "compare"; r["case"] = name; r["preset"] = preset; r["method"] = config.method.rawValue
        r["batch"] = batch; r["threads"] = ComputeThreads.count; r["steps"] = steps
        r["ms_per_step"] = ms
        r["images_per_s"] = Double(batch) / (ms / 1000)
        r["gflops"] = flops / (ms / 1000) / 1e9
        r["gflop_per_image"] = flops / Double(batch) / 1e9
        r["encoder_gflop_per_image"] = encoderFlops / Double(batch) / 1e9
        r["peak_rss_mb"] = Report.peakRSSMB()
        r["peak_tensor_mb"] = peakTensor
        r["fresh_allocs_per_step"] = Double(BufferPool.shared.statistics.freshAllocations - allocs) / Double(steps)
        return r
    }
}
