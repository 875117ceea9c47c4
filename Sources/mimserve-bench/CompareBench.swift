import Config
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
/// - UM-MAE and GreenMIM against SimMIM on one Swin (`--backbone`, `--image`, `--window`; by
///   default Swin-T at 256 px with window 8, UM-MAE's own setting, or the tiny T-Swin): each
///   method keeps its masking (SimMIM and GreenMIM units of the final stride, UM-MAE half of it).
///
/// Every case runs in its own child process (this executable with `--only`), so each peak RSS
/// is that case's own high-water mark. Ratios: `vs_simmim_speed` = images/s ÷ SimMIM's (> 1 is
/// faster), `vs_simmim_memory` = peak RSS ÷ SimMIM's (< 1 is leaner), `vs_simmim_flops` =
/// training FLOPs per image ÷ SimMIM's; `vs_mae_speed` and `vs_mae_memory` likewise.
/// `activation_mb` is the step's working set (the tensor pool's peak minus what stays live
/// between steps: weights, gradients, AdamW moments, the batch), the part that grows with the
/// batch and that the papers' large-batch GPU memory figures mostly measure;
/// `vs_simmim_activation_memory` is its ratio.
struct CompareBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "MixMAE, UM-MAE and GreenMIM vs SimMIM (same Swin), ConvMAE vs MAE (matched width).")

    @Option(help: "Scale: tiny (32 px test presets) or paper (alias default; 224 px, 256 px for UM-MAE/GreenMIM).")
    var scale = "tiny"
    @Option(help: "Comma-separated methods to compare with their baselines (default: all of \(Self.groups.flatMap(\.methods).map(\.rawValue))).")
    var methods: String?
    @Option(help: "UM-MAE/GreenMIM backbone: tswin, swin_t or swin_b (default: tswin tiny, swin_t paper).") var backbone: String?
    @Option(help: "UM-MAE/GreenMIM image size (default: 32 tswin, 256 Swin; at 224 UM-MAE's compacted map cannot halve three times).")
    var image: Int?
    @Option(help: "UM-MAE/GreenMIM window (default: 4 tswin, image / 32 Swin).") var window: Int?
    @Option(help: "Batch size (default: 16 tiny, 2 paper).") var batch: Int?
    @Option(help: "Timed steps (median reported).") var steps = 5
    @Option(help: "Warm-up steps.") var warmup = 2
    @Option(help: "Thread count (default: all cores).") var threads: Int?
    @Option(help: "Rounds of all cases, interleaved; each case reports its median round (load noise).") var rounds = 1
    @Option(help: .hidden) var only: String?

    /// Cases in groups: a baseline and the methods measured against it.
    static let groups: [(baseline: String, methods: [Method])] = [
        ("simmim_same_swin", [.mixmae]), ("mae_matched_width", [.convmae]), ("simmim_visible_swin", [.ummae, .greenmim]),
    ]
    static let cases = ["simmim_same_swin", "mixmae", "mae_matched_width", "convmae", "simmim_visible_swin", "ummae", "greenmim"]

    var isPaper: Bool { scale != "tiny" }

    func validate() throws {
        guard ["tiny", "paper", "default"].contains(scale) else { throw ValidationError("scale must be tiny or paper, got \(scale)") }
        if let only, !Self.cases.contains(only) { throw ValidationError("unknown case \(only)") }
        for m in selectedMethods where !Self.groups.contains(where: { $0.methods.contains(m) }) {
            throw ValidationError("compare has no case for \(m.rawValue); choose among \(Self.groups.flatMap(\.methods).map(\.rawValue))")
        }
    }

    var selectedMethods: [Method] {
        methods.map { $0.split(separator: ",").compactMap { Method(rawValue: $0.trimmingCharacters(in: .whitespaces)) } }
            ?? Self.groups.flatMap(\.methods)
    }

    /// The selected methods' cases, each group led by its baseline.
    var selectedCases: [String] {
        Self.groups.flatMap { g in
            let chosen = g.methods.filter(selectedMethods.contains)
            return chosen.isEmpty ? [] : [g.baseline] + chosen.map(\.rawValue)
        }
    }

    func run() throws {
        if let threads { ComputeThreads.set(threads) }
        let batch = batch ?? (isPaper ? 2 : 16)
        if let only {  // child: one case, one JSON line
            Report.emit(try measure(only, batch: batch))
            return
        }
        let cases = selectedCases
        guard !cases.isEmpty else { throw ValidationError("no case to run for --methods \(methods ?? "")") }
        let peak = SGEMMPeak.measure()
        var runs: [String: [Record]] = [:]
        for _ in 0..<max(rounds, 1) {
            for name in cases { runs[name, default: []].append(try childRecord(name, batch: batch)) }
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
        for name in ["mixmae", "ummae", "greenmim"] where rows[name] != nil {
            let base = name == "mixmae" ? "simmim_same_swin" : "simmim_visible_swin"
            rows[name]!["vs_simmim_speed"] = ratio(name, base, "images_per_s")
            rows[name]!["vs_simmim_memory"] = ratio(name, base, "peak_rss_mb")
            rows[name]!["vs_simmim_flops"] = ratio(name, base, "gflop_per_image")
            rows[name]!["vs_simmim_activation_memory"] = ratio(name, base, "activation_mb")
        }
        if rows["convmae"] != nil {
            rows["convmae"]!["vs_mae_speed"] = ratio("convmae", "mae_matched_width", "images_per_s")
            rows["convmae"]!["vs_mae_memory"] = ratio("convmae", "mae_matched_width", "peak_rss_mb")
            rows["convmae"]!["vs_mae_flops"] = ratio("convmae", "mae_matched_width", "gflop_per_image")
        }
        let ordered = cases.map { rows[$0]! }
        for r in ordered { Report.emit(r) }
        Report.table(ordered, columns: ["case", "preset", "batch", "ms_per_step", "images_per_s", "gflop_per_image",
                                        "encoder_gflop_per_image", "gflops", "peak_ratio", "peak_rss_mb", "activation_mb",
                                        "vs_simmim_speed", "vs_simmim_memory", "vs_simmim_activation_memory", "vs_simmim_flops",
                                        "vs_mae_speed", "vs_mae_memory", "note"])
    }

    /// Runs this executable with `--only name` and parses its JSON line.
    func childRecord(_ name: String, batch: Int) throws -> Record {
        let process = Process()
        process.executableURL = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        var args = ["compare", "--only", name, "--scale", scale, "--batch", String(batch), "--steps", String(steps),
                    "--warmup", String(warmup), "--threads", String(threads ?? ComputeThreads.count)]
        if let backbone { args += ["--backbone", backbone] }
        if let image { args += ["--image", String(image)] }
        if let window { args += ["--window", String(window)] }
        process.arguments = args
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
        for key in ["suite", "case", "preset", "method", "image", "batch", "threads", "steps", "ms_per_step", "images_per_s",
                    "gflops", "gflop_per_image", "encoder_gflop_per_image", "peak_rss_mb", "peak_tensor_mb", "state_mb",
                    "activation_mb", "fresh_allocs_per_step", "note"] {
            switch object[key] {
            case let s as String: r[key] = s
            case let n as NSNumber: r[key] = ["image", "batch", "threads", "steps"].contains(key) ? n.intValue as Any : n.doubleValue as Any
            default: break
            }
        }
        return r
    }

    /// The configuration of a case at a scale.
    func config(_ name: String) throws -> (config: ModelConfig, recipe: Recipe, preset: String) {
        let alias = isPaper ? "default" : "tiny"
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
        case "simmim_visible_swin", "ummae", "greenmim":
            let method: Method = name == "simmim_visible_swin" ? .simmim : Method(rawValue: name)!
            let p = try Presets.resolve(method: method, preset: alias)
            let c = try visibleOnlyConfig(p.model)
            return (c, p.recipe, c == p.model ? p.name : "\(method.rawValue)_\(backboneName)_window\(c.windowSize)_\(c.imageSize)")
        default:
            let p = try Presets.resolve(method: .mae, preset: alias)
            return (p.model, p.recipe, p.name)
        }
    }

    var backboneName: String { backbone ?? (isPaper ? "swin_t" : "tswin") }

    /// A method's preset with the shared backbone of the UM-MAE / GreenMIM comparison swapped in;
    /// each method keeps its own unit rule (SimMIM and GreenMIM the final stride, UM-MAE half).
    func visibleOnlyConfig(_ preset: ModelConfig) throws -> ModelConfig {
        var c = preset
        switch backboneName {
        case "tswin": (c.patchSize, c.embedDim, c.depths, c.heads) = (2, 32, [2, 2, 2], [2, 4, 8])
        case "swin_t": (c.patchSize, c.embedDim, c.depths, c.heads) = (4, 96, [2, 2, 6, 2], [3, 6, 12, 24])
        case "swin_b": (c.patchSize, c.embedDim, c.depths, c.heads) = (4, 128, [2, 2, 18, 2], [4, 8, 16, 32])
        default: throw ValidationError("unknown backbone '\(backboneName)'; choose tswin, swin_t or swin_b")
        }
        c.imageSize = image ?? (backboneName == "tswin" ? 32 : 256)
        c.windowSize = window ?? (backboneName == "tswin" ? 4 : c.imageSize / 32)
        let stride = c.patchSize << (c.depths.count - 1)
        c.maskUnit = c.method == .ummae ? stride / 2 : stride
        if c.groupSizeMax != nil { c.groupSizeMax = c.windowSize * c.windowSize }
        return c
    }

    /// Training steps (forward, backward, clip, AdamW) of one case on random normalised images.
    func measure(_ name: String, batch: Int) throws -> Record {
        let (config, recipe, preset) = try config(name)
        var r = Record()
        r["suite"] = "compare"; r["case"] = name; r["preset"] = preset; r["method"] = config.method.rawValue
        r["image"] = config.imageSize; r["batch"] = batch; r["threads"] = ComputeThreads.count; r["steps"] = steps
        do { try config.validate() } catch {
            r["note"] = "skipped: \(error)"  // e.g. UM-MAE at 224 px
            return r
        }
        let model = try ModelRegistry.make(config, seed: 0)
        let opt = AdamW(parameters: model.namedParameters(), weightDecay: recipe.weightDecay,
                        betas: (recipe.beta1, recipe.beta2), noDecay: model.excludedFromWeightDecay)
        var rng = RandomGenerator(seed: 1)
        let images = Init.normal([batch, 3, config.imageSize, config.imageSize], std: 1, rng: &rng)
        func step() {
            let loss = model.trainingLoss(images, mask: model.sampleMask(batch: batch, ratio: nil, rng: &rng))
            try? opt.minimize(loss, lr: 1e-4, clipGrad: recipe.clipGrad)
        }
        for _ in 0..<warmup { step() }
        let allocs = BufferPool.shared.statistics.freshAllocations
        let stateFloats = BufferPool.shared.statistics.liveFloats
        BufferPool.shared.resetPeak()
        FLOPCounter.reset()
        let times = (0..<steps).map { _ in timed(step) }
        let flops = Double(FLOPCounter.value) / Double(steps)
        let peakFloats = BufferPool.shared.statistics.peakLiveFloats
        let peakRSS = Report.peakRSSMB()  // before the feature pass below can raise it
        FLOPCounter.reset()
        _ = model.features(images, pool: .mean)
        let encoderFlops = Double(FLOPCounter.value)
        let ms = median(times) * 1000
        r["ms_per_step"] = ms
        r["images_per_s"] = Double(batch) / (ms / 1000)
        r["gflops"] = flops / (ms / 1000) / 1e9
        r["gflop_per_image"] = flops / Double(batch) / 1e9
        r["encoder_gflop_per_image"] = encoderFlops / Double(batch) / 1e9
        r["peak_rss_mb"] = peakRSS
        r["peak_tensor_mb"] = Double(peakFloats) * 4 / 1_048_576  // MB as in peak_rss_mb
        r["state_mb"] = Double(stateFloats) * 4 / 1_048_576
        r["activation_mb"] = Double(peakFloats - stateFloats) * 4 / 1_048_576
        r["fresh_allocs_per_step"] = Double(BufferPool.shared.statistics.freshAllocations - allocs) / Double(steps)
        return r
    }
}
