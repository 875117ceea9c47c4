import ArgumentParser
import Foundation
import Models
import NN
import Optim
import TensorCore

/// `mimserve-bench compare`: training steps of several methods on the SAME Swin backbone, with
/// speed and memory relative to SimMIM (DESIGN §6; the UM-MAE and GreenMIM papers' claims).
/// Each method runs in its own child process so its peak RSS is its own. On a shared machine
/// `--rounds R` runs the methods R times, interleaved, and keeps each method's fastest run
/// (other processes only ever slow a run down).
///
/// `vs_simmim_speed` = images/s ÷ SimMIM's (above 1: faster); `vs_simmim_memory` = peak RSS ÷
/// SimMIM's (below 1: lighter). `peak_tensor_mb` is the tensor pool's own peak during the timed
/// steps; `state_mb` what stays live between steps (weights, gradients, AdamW moments, the
/// batch); `activation_mb` = peak − state, the step's working set, which grows with the batch
/// and is what the papers' GPU memory figures at large batches mostly measure
/// (`vs_simmim_activation_memory`).
struct CompareBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare", abstract: "Methods on one Swin backbone: speed and memory against SimMIM.")

    @Option(help: "Comma-separated methods (simmim is the baseline).") var methods = "simmim,ummae,greenmim"
    @Option(help: "tiny (T-Swin at 32 px) or default (paper-scale Swin).") var scale = "default"
    @Option(help: "swin_t, swin_b or tswin (default: tswin for tiny, swin_t otherwise).") var backbone: String?
    @Option(help: "Image size (default: 32 tiny; 256 for Swin, where all three methods fit: at 224 UM-MAE's compacted map cannot halve three times).") var image: Int?
    @Option(help: "Window (default: 4 for T-Swin, image / 32 for Swin).") var window: Int?
    @Option(help: "Batch size (default: 16 tiny, 4 otherwise).") var batch: Int?
    @Option(help: "Timed steps (median reported).") var steps = 5
    @Option(help: "Warm-up steps.") var warmup = 2
    @Option(help: "Thread count (default: all cores).") var threads: Int?
    @Option(help: "Runs per method, interleaved; the fastest counts.") var rounds = 1
    @Flag(help: "Skip the same-run sgemm peak measurement.") var noPeak = false
    @Flag(help: .hidden) var inProcess = false

    func run() throws {
        guard ["tiny", "default"].contains(scale) else { throw ValidationError("--scale must be tiny or default, got '\(scale)'") }
        let names = methods.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        for n in names where Method(rawValue: n) == nil { throw ValidationError("unknown method '\(n)'") }
        if let threads { ComputeThreads.set(threads) }
        if inProcess {
            for n in names { Report.emit(try measure(Method(rawValue: n)!)) }
            return
        }
        var peak = 0.0
        var best: [String: Record] = [:]
        for _ in 0..<max(rounds, 1) {
            if !noPeak { peak = max(peak, SGEMMPeak.measure()) }
            for n in names {
                let r = try child(method: n)
                let ms = r["ms_per_step"] as? Double ?? .infinity
                if best[n] == nil || ms < (best[n]!["ms_per_step"] as? Double ?? .infinity) { best[n] = r }
            }
        }
        var rows: [Record] = names.map { best[$0]! }
        for i in rows.indices {
            rows[i]["rounds"] = max(rounds, 1)
            rows[i]["peak_gflops"] = noPeak ? Double.nan : peak
            if let g = rows[i]["gflops"] as? Double { rows[i]["peak_ratio"] = g / peak }
        }
        if let base = rows.first(where: { ($0["method"] as? String) == "simmim" }),
           let baseSpeed = base["images_per_s"] as? Double, let baseRSS = base["peak_rss_mb"] as? Double {
            for i in rows.indices {
                if let s = rows[i]["images_per_s"] as? Double { rows[i]["vs_simmim_speed"] = s / baseSpeed }
                if let m = rows[i]["peak_rss_mb"] as? Double { rows[i]["vs_simmim_memory"] = m / baseRSS }
                if let a = rows[i]["activation_mb"] as? Double, let ba = base["activation_mb"] as? Double {
                    rows[i]["vs_simmim_activation_memory"] = a / ba
                }
            }
        }
        rows.forEach(Report.emit)
        Report.table(rows, columns: ["method", "image", "batch", "threads", "ms_per_step", "images_per_s", "gflop_per_image",
                                     "gflops", "peak_ratio", "peak_rss_mb", "activation_mb", "vs_simmim_speed",
                                     "vs_simmim_memory", "vs_simmim_activation_memory", "note"])
    }

    /// The method's preset at this scale with the shared backbone swapped in.
    func config(for method: Method) throws -> ModelConfig {
        let tiny = scale == "tiny"
        var c = try Presets.resolve(method: method, preset: tiny ? "tiny" : "default").model
        let b = backbone ?? (tiny ? "tswin" : "swin_t")
        switch b {
        case "tswin": (c.patchSize, c.embedDim, c.depths, c.heads) = (2, 32, [2, 2, 2], [2, 4, 8])
        case "swin_t": (c.patchSize, c.embedDim, c.depths, c.heads) = (4, 96, [2, 2, 6, 2], [3, 6, 12, 24])
        case "swin_b": (c.patchSize, c.embedDim, c.depths, c.heads) = (4, 128, [2, 2, 18, 2], [4, 8, 16, 32])
        default: throw ValidationError("unknown backbone '\(b)'; choose tswin, swin_t or swin_b")
        }
        c.imageSize = image ?? (b == "tswin" ? 32 : 256)
        c.windowSize = window ?? (b == "tswin" ? 4 : c.imageSize / 32)
        // Each method keeps its own unit rule: SimMIM and GreenMIM the final stride, UM-MAE half of it.
        let stride = c.patchSize << (c.depths.count - 1)
        c.maskUnit = method == .ummae ? stride / 2 : stride
        return c
    }

    /// Runs this command for one method in a child process and reads its JSON line.
    func child(method: String) throws -> Record {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var args = ["compare", "--methods", method, "--scale", scale, "--steps", String(steps), "--warmup", String(warmup),
                    "--in-process"]
        if let backbone { args += ["--backbone", backbone] }
        if let image { args += ["--image", String(image)] }
        if let window { args += ["--window", String(window)] }
        if let batch { args += ["--batch", String(batch)] }
        if let threads { args += ["--threads", String(threads)] }
        process.arguments = args
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            var r = Record()
            r["suite"] = "compare"; r["method"] = method
            r["note"] = "failed: " + String(decoding: errors, as: UTF8.self).split(separator: "\n").suffix(2).joined(separator: " ")
            return r
        }
        var r = Record()
        for key in Self.keys { if let v = object[key] { r[key] = (v as? NSNumber).map { n in Self.integerKeys.contains(key) ? n.intValue as Any : n.doubleValue as Any } ?? v } }
        return r
    }

    static let keys = ["suite", "case", "preset", "method", "image", "batch", "threads", "steps", "ms_per_step", "images_per_s",
                       "gflops", "gflop_per_image", "peak_rss_mb", "peak_tensor_mb", "state_mb", "activation_mb",
                       "fresh_allocs_per_step", "note"]
    static let integerKeys: Set<String> = ["image", "batch", "threads", "steps"]

    /// Times training steps (forward, backward, AdamW; SimMIM also clips) of one method.
    func measure(_ method: Method) throws -> Record {
        let c = try config(for: method)
        let batch = self.batch ?? (scale == "tiny" ? 16 : 4)
        var rec = Record()
        rec["suite"] = "compare"; rec["method"] = method.rawValue; rec["image"] = c.imageSize; rec["batch"] = batch
        rec["case"] = "\(method.rawValue)/\(backbone ?? (scale == "tiny" ? "tswin" : "swin_t"))_w\(c.windowSize)_\(c.imageSize)"
        do { try c.validate() } catch {
            rec["note"] = "skipped: \(error)"
            return rec
        }
        let model = try ModelRegistry.make(c, seed: 0)
        let recipe = try Presets.resolve(method: method, preset: "default").recipe
        let opt = AdamW(parameters: model.namedParameters(), weightDecay: recipe.weightDecay, betas: (recipe.beta1, recipe.beta2),
                        noDecay: model.excludedFromWeightDecay)
        var rng = RandomGenerator(seed: 1)
        let images = Init.normal([batch, 3, c.imageSize, c.imageSize], std: 1, rng: &rng)
        func step() {
            let out = model.forward(images, mask: model.sampleMask(batch: batch, ratio: nil, rng: &rng))
            opt.zeroGrad()
            out.loss.backward()
            if let clip = recipe.clipGrad { _ = clipGradNorm(model.parameters, maxNorm: clip) }
            opt.step(lr: 1e-4)
        }
        for _ in 0..<warmup { step() }
        let allocs = BufferPool.shared.statistics.freshAllocations
        let stateFloats = BufferPool.shared.statistics.liveFloats
        BufferPool.shared.resetPeak()
        FLOPCounter.reset()
        let times = (0..<steps).map { _ in timed(step) }
        let flops = Double(FLOPCounter.value) / Double(steps)
        let ms = median(times) * 1000
        let preset = try Presets.resolve(method: method, preset: scale == "tiny" ? "tiny" : "default")
        if preset.model == c { rec["preset"] = preset.name }  // otherwise `case` names the swapped-in backbone
        rec["threads"] = ComputeThreads.count; rec["steps"] = steps
        rec["ms_per_step"] = ms
        rec["images_per_s"] = Double(batch) / (ms / 1000)
        rec["gflops"] = flops / (ms / 1000) / 1e9
        rec["gflop_per_image"] = flops / Double(batch) / 1e9
        rec["peak_rss_mb"] = Report.peakRSSMB()
        let peakFloats = BufferPool.shared.statistics.peakLiveFloats
        rec["peak_tensor_mb"] = Double(peakFloats) * 4 / 1_048_576
        rec["state_mb"] = Double(stateFloats) * 4 / 1_048_576
        rec["activation_mb"] = Double(peakFloats - stateFloats) * 4 / 1_048_576
        rec["fresh_allocs_per_step"] = Double(BufferPool.shared.statistics.freshAllocations - allocs) / Double(steps)
        return rec
    }
}
