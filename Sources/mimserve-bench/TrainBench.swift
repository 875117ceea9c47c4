import Config
import ArgumentParser
import Foundation
import Models
import NN
import Optim
import TensorCore
import Trainer

/// `mimserve-bench train`: full pretraining steps (forward, backward, clip, AdamW) of one
/// method and preset on random normalised images, timed after warm-up; with `--task finetune`,
/// fine-tuning steps of its encoder under a 10-class head (random labels, no clipping).
struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Training-step throughput of one method and preset.")

    @Option(help: "Method: \(Method.allCases.map(\.rawValue).joined(separator: ", ")).") var method: String
    @Option(help: "Preset name, or tiny / default (paper scale).") var preset = "default"
    @Option(help: "Batch size (default: the preset recipe's).") var batch: Int?
    @Option(help: "Timed steps (median reported).") var steps = 5
    @Option(help: "Warm-up steps.") var warmup = 2
    @Option(help: "Thread count (default: all cores).") var threads: Int?
    @Flag(help: "Skip the same-run sgemm peak measurement.") var noPeak = false
    @Option(help: "GEMM inputs: fp32, or bf16 with fp32 sums (needs AVX512_BF16 or AMX).") var precision = Precision.fp32
    @Flag(help: "Recompute each block in the backward pass instead of keeping its activations.") var recompute = false
    @Option(help: "pretrain, or finetune: the encoder under a 10-class linear head on every token.") var task = JobTask.pretrain
    @Flag(help: "After the timed steps, time as many more per kind of work (GEMM, attention, norm, activation, memory movement, optimizer, …).")
    var profile = false
    @Flag(help: "After the timed steps, time each GEMM shape of a step in OpenBLAS, oneDNN's sgemm and oneDNN's matmul primitive, alternated, and the step's GEMMs in each and in the fastest per shape.")
    var kernels = false
    @Flag(help: "With --precision bf16: run the same steps (same seed, batch and masks) again in fp32, and print both loss curves and the largest relative gap between them at any step.")
    var curve = false

    func run() throws {
        guard Precision.runnable.contains(precision) else {
            throw ValidationError("this CPU runs \(Precision.runnable.map(\.rawValue)) only: bf16 needs AVX512_BF16 or AMX (or MIMSERVE_BF16_EMULATE=1 for memory, not speed)")
        }
        guard !curve || precision == .bf16 else { throw ValidationError("--curve compares a bf16 run with fp32: add --precision bf16") }
        guard let m = Method(rawValue: method) else {
            throw ValidationError("unknown method '\(method)'; choose one of \(Method.allCases.map(\.rawValue))")
        }
        let p = try Presets.resolve(method: m, preset: preset)
        if let threads { ComputeThreads.set(threads) }
        let peak = noPeak ? Double.nan : SGEMMPeak.measure()
        let timer = TrainStepTimer(preset: p, batch: batch ?? p.recipe.defaultBatchSize, warmup: warmup, steps: steps,
                                   precision: precision, recompute: recompute, profile: profile, kernels: kernels, task: task)
        var (r, profiled, shapes) = try timer.run()
        if curve {
            // The same run in fp32, after the bf16 one so that the peak RSS above is bf16's.
            var reference = timer
            reference.precision = .fp32
            reference.profile = false
            reference.kernels = false
            let fp32 = try reference.run().0["losses"] as! [Float], ours = r["losses"] as! [Float]
            r["fp32_losses"] = fp32
            r["max_relative_loss_gap"] = zip(ours, fp32).map { abs(Double($0) / Double($1) - 1) }.max() ?? .nan
        }
        r["peak_gflops"] = peak
        r["peak_ratio"] = (r["gflops"] as! Double) / peak
        Report.emit(r)
        Report.table([r], columns: ["method", "preset", "task", "precision", "batch", "threads", "ms_per_step", "images_per_s", "gflops",
                                    "peak_ratio", "peak_rss_mb", "pool_peak_live_mb", "pool_held_mb", "estimated_peak_rss_mb", "fresh_allocs_per_step"]
                                   + (curve ? ["max_relative_loss_gap"] : []))
        if let profiled {
            let rows = StepProfile.records(profiled, base: r)
            rows.forEach(Report.emit)
            Report.table(rows, columns: ["kind", "forward_ms", "backward_ms", "update_ms", "ms_per_step", "share", "calls_per_step"])
        }
        if kernels {
            let rows = KernelComparison.records(shapes, case: r["case"] as! String, rounds: steps)
            rows.forEach(Report.emit)
            Report.table(rows, columns: KernelComparison.columns)
        }
    }
}

/// Each GEMM shape of a step timed in every kernel (`gemm`'s own split on all threads, dense
/// operands), the kernels alternated call by call so a guest's drifting speed falls on all
/// alike; medians over `rounds`. The last row sums the step: every product in each kernel, and
/// each in the kernel that ran it fastest (what a rule by shape could gain at most, before
/// noise). Blocks under `SGEMMKernel`'s size threshold run in OpenBLAS either way.
enum KernelComparison {
    static let columns = ["shape", "calls_per_step"] + SGEMMKernel.allCases.map { "\(key($0))_gflops" } + ["fastest"]
        + SGEMMKernel.allCases.map { "\(key($0))_ms_per_step" } + ["fastest_ms_per_step"]

    static func key(_ kernel: SGEMMKernel) -> String { kernel.rawValue.replacingOccurrences(of: "-", with: "_") }

    static func records(_ shapes: [GEMMShapes.Shape: Int], case name: String, rounds: Int) -> [Record] {
        var rows: [Record] = []
        var totals: [SGEMMKernel: Double] = [:], fastestTotal = 0.0
        let ordered = shapes.sorted { a, b in
            let fa = a.value * a.key.m * a.key.n * a.key.k, fb = b.value * b.key.m * b.key.n * b.key.k
            return fa != fb ? fa > fb : "\(a.key)" < "\(b.key)"
        }
        var rng = RandomGenerator(seed: 3)
        for (s, calls) in ordered {
            let a = Init.normal([s.m * s.k], std: 1, rng: &rng), b = Init.normal([s.k * s.n], std: 1, rng: &rng)
            let c = Tensor(zeros: [s.m * s.n])
            func run(_ kernel: SGEMMKernel) -> Double {
                timed {
                    gemm(transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, a: a.pointer, lda: s.transA ? s.m : s.k,
                         b: b.pointer, ldb: s.transB ? s.k : s.n, c: c.pointer, ldc: s.n, kernel: kernel)
                }
            }
            for kernel in SGEMMKernel.allCases { _ = run(kernel) }  // warm-up (and the matmul primitive made)
            var times: [SGEMMKernel: [Double]] = [:]
            for _ in 0..<max(rounds, 1) {
                for kernel in SGEMMKernel.allCases { times[kernel, default: []].append(run(kernel)) }
            }
            let medians = times.mapValues(median)
            let fastest = SGEMMKernel.allCases.min { medians[$0]! < medians[$1]! }!
            let flops = 2 * Double(s.m * s.n * s.k)
            var r = Record()
            r["suite"] = "kernels"; r["case"] = name
            r["shape"] = "\(s.transA ? "T" : "N")\(s.transB ? "T" : "N") \(s.m)×\(s.n)×\(s.k)"
            r["calls_per_step"] = calls
            for kernel in SGEMMKernel.allCases {
                r["\(key(kernel))_gflops"] = flops / medians[kernel]! / 1e9
                r["\(key(kernel))_ms_per_step"] = medians[kernel]! * Double(calls) * 1000
                totals[kernel, default: 0] += medians[kernel]! * Double(calls)
            }
            r["fastest"] = fastest.rawValue
            r["fastest_ms_per_step"] = medians[fastest]! * Double(calls) * 1000
            fastestTotal += medians[fastest]! * Double(calls)
            rows.append(r)
        }
        var step = Record()
        step["suite"] = "kernels"; step["case"] = name; step["shape"] = "step"
        step["calls_per_step"] = shapes.values.reduce(0, +)
        for kernel in SGEMMKernel.allCases { step["\(key(kernel))_ms_per_step"] = totals[kernel, default: 0] * 1000 }
        step["fastest_ms_per_step"] = fastestTotal * 1000
        return rows + [step]
    }
}

/// The best of a few 1024³ sgemm timings on all threads: the GEMM peak of this run.
enum SGEMMPeak {
    static func measure() -> Double {
        let n = 1024
        var rng = RandomGenerator(seed: 1)
        let a = Init.normal([n, n], std: 1, rng: &rng), b = Init.normal([n, n], std: 1, rng: &rng)
        let c = Tensor(zeros: [n, n])
        let run = { gemm(transA: false, transB: false, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n,
                         c: c.pointer, ldc: n) }
        run()
        let best = (0..<8).map { _ in timed(run) }.min()!
        return 2 * Double(n * n * n) / best / 1e9
    }
}

/// Times `steps` training steps of a preset after `warmup`.
struct TrainStepTimer {
    let preset: Preset
    let batch: Int
    let warmup: Int
    let steps: Int
    var precision = Precision.fp32
    var recompute = false
    /// Also runs `steps` profiled steps after the timed ones.
    var profile = false
    /// Also records the GEMM shapes of one more step.
    var kernels = false
    var task = JobTask.pretrain
    /// Classes of the fine-tuning head.
    static let classes = 10

    /// The timing record, the profile of as many more steps when asked for, and the GEMM
    /// shapes of one more step when asked for (empty otherwise).
    func run() throws -> (Record, StepProfile?, [GEMMShapes.Shape: Int]) {
        let finetune = task == .finetune
        let model = try ModelRegistry.make(preset.model, seed: 0, decoderBlocks: !finetune)
        let r = preset.recipe
        let classifier = finetune ? Classifier(backbone: model, classes: Self.classes, pool: .mean, seed: 0) : nil
        // Fine-tuning never clips (the fine-tuning recipe of every method).
        let clipGrad = finetune ? nil : r.clipGrad
        let opt = AdamW(parameters: classifier?.namedParameters() ?? model.namedParameters(), weightDecay: r.weightDecay,
                        betas: (r.beta1, r.beta2), noDecay: classifier?.excludedFromWeightDecay ?? model.excludedFromWeightDecay)
        opt.keepsBF16Copies = !recompute  // as a job's run (TrainingRun)
        opt.holdsGradientBuffers = recompute && clipGrad != nil
        var rng = RandomGenerator(seed: 1)
        let size = preset.model.imageSize
        let images = Init.normal([batch, 3, size, size], std: 1, rng: &rng)
        let targets = (0..<batch).flatMap { i in (0..<Self.classes).map { Float($0 == i % Self.classes ? 1 : 0) } }
        var losses: [Float] = []
        func step() {
            let bf16 = precision == .bf16
            let loss = BF16.gemms(bf16) {
                Recompute.blocks(recompute) {
                    if let classifier { return Tensor.softTargetCrossEntropy(classifier(images), targets: targets) }
                    return model.trainingLoss(images, mask: model.sampleMask(batch: batch, ratio: nil, rng: &rng))
                }
            }
            losses.append(loss.item)
            try? BF16.gemms(bf16) { try opt.minimize(loss, lr: 1e-4, clipGrad: clipGrad) }
        }
        for _ in 0..<warmup { step() }
        let allocs = BufferPool.shared.statistics.freshAllocations
        FLOPCounter.reset()
        let times = (0..<steps).map { _ in timed(step) }
        let flops = Double(FLOPCounter.value) / Double(steps)
        let ms = median(times) * 1000
        var rec = Record()
        rec["suite"] = "train"; rec["case"] = "\(preset.model.method.rawValue)/\(preset.name)"
        rec["method"] = preset.model.method.rawValue; rec["preset"] = preset.name
        rec["batch"] = batch; rec["threads"] = ComputeThreads.count; rec["steps"] = steps
        rec["precision"] = precision == .bf16 && BF16.emulated ? "bf16 (emulated)" : precision.rawValue
        rec["recompute"] = recompute
        rec["task"] = task.rawValue
        rec["ms_per_step"] = ms
        rec["images_per_s"] = Double(batch) / (ms / 1000)
        rec["gflops"] = flops / (ms / 1000) / 1e9
        rec["gflop_per_image"] = flops / Double(batch) / 1e9
        rec["peak_rss_mb"] = Report.peakRSSMB()
        // The tensors' share of it: the most floats live at once, and what the pool holds
        // (live and cached for reuse; a cached buffer serves only requests of its own bucket).
        let pool = BufferPool.shared.statistics
        rec["pool_peak_live_mb"] = Double(pool.peakLiveFloats * 4) / 1048576
        rec["pool_held_mb"] = Double((pool.liveFloats + pool.cachedFloats) * 4) / 1048576
        rec["parameter_mb"] = Double(model.parameters.reduce(0) { $0 + $1.count } * 4) / 1048576
        // What job submission predicts for this step (the cost model), against the measurement.
        let estimate = preset.model.estimate(batch: batch, step: StepMemory(holdsAllGradients: clipGrad != nil, recompute: recompute, bf16: precision == .bf16),
                                             finetuneClasses: finetune ? Self.classes : nil)
        rec["estimated_peak_rss_mb"] = Double(estimate.peakBytes) / 1048576
        rec["estimated_gflop_per_image"] = estimate.flopsPerStep / Double(batch) / 1e9
        rec["fresh_allocs_per_step"] = Double(BufferPool.shared.statistics.freshAllocations - allocs) / Double(steps)
        rec["losses"] = losses  // every step's, warm-up included
        let shapes = kernels ? GEMMShapes.record { step() } : [:]
        guard profile else { return (rec, nil, shapes) }
        // Separate steps: the spans' clock reads must not touch the figures above.
        var profiledTimes: [Double] = []
        let totals = Profiler.collect { profiledTimes = (0..<steps).map { _ in timed(step) } }
        return (rec, StepProfile(totals: totals, steps: steps, stepSeconds: profiledTimes.reduce(0, +) / Double(steps)), shapes)
    }
}

/// Where the profiled steps' time went, per kind of work and phase, averaged per step.
struct StepProfile {
    let totals: Profiler.Profile
    let steps: Int
    /// Mean wall time of a profiled step.
    let stepSeconds: Double

    /// One record per kind (largest first), then `other` (no span: glue, masks, tape) and `step`.
    static func records(_ p: StepProfile, base: Record) -> [Record] {
        let n = Double(p.steps)
        var rows: [(Double, Record)] = []
        var covered = 0.0
        for kind in Profiler.Kind.allCases {
            let phases = p.totals[kind] ?? [:]
            let seconds = phases.values.reduce(0) { $0 + $1.seconds } / n
            covered += seconds
            var r = Record()
            r["suite"] = "profile"; r["case"] = base["case"]; r["precision"] = base["precision"]; r["kind"] = kind.rawValue
            r["forward_ms"] = (phases[.forward]?.seconds ?? 0) / n * 1000
            r["backward_ms"] = (phases[.backward]?.seconds ?? 0) / n * 1000
            r["update_ms"] = (phases[.update]?.seconds ?? 0) / n * 1000
            r["ms_per_step"] = seconds * 1000
            r["share"] = seconds / p.stepSeconds
            r["calls_per_step"] = Double(phases.values.reduce(0) { $0 + $1.calls }) / n
            rows.append((seconds, r))
        }
        var other = Record(), step = Record()
        other["suite"] = "profile"; other["case"] = base["case"]; other["precision"] = base["precision"]; other["kind"] = "other"
        other["ms_per_step"] = max(0, p.stepSeconds - covered) * 1000
        other["share"] = max(0, p.stepSeconds - covered) / p.stepSeconds
        step["suite"] = "profile"; step["case"] = base["case"]; step["precision"] = base["precision"]; step["kind"] = "step"
        step["ms_per_step"] = p.stepSeconds * 1000
        step["share"] = 1.0
        return rows.sorted { $0.0 > $1.0 }.map(\.1) + [other, step]
    }
}

extension Precision: ExpressibleByArgument {}
extension JobTask: ExpressibleByArgument {}
