import ArgumentParser
import Foundation
import NN
import TensorCore

/// `mimserve-bench core`: sgemm peak (1 and 2 threads) and a ViT-S block forward + backward.
struct CoreBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core", abstract: "sgemm GFLOP/s, a ViT-S transformer block and attention at paper shapes, forward + backward.")

    @Option(help: "Timed repetitions per case (median reported).") var steps = 10
    @Option(help: "Warm-up repetitions per case.") var warmup = 3
    @Option(help: "Batch of the ViT block case.") var batch = 16
    @Option(help: "Thread count for the block case (default: all cores).") var threads: Int?
    @Flag(help: "Run only the attention cases.") var attentionOnly = false

    func run() throws {
        var rows: [Record] = []
        let maxThreads = threads ?? ComputeThreads.count
        var peak = 0.0
        if attentionOnly {
            let cases = attentionCases(threads: maxThreads)
            cases.forEach(Report.emit)
            Report.table(cases, columns: ["case", "threads", "precision", "ms_per_step", "gflops"])
            return
        }
        let shapes: [(String, Int, Int, Int)] = [
            ("sgemm_1024", 1024, 1024, 1024),
            ("qkv_3152x384x1152", 3152, 1152, 384),
            ("fc1_3152x384x1536", 3152, 1536, 384),
            ("fc2_3152x1536x384", 3152, 384, 1536),
        ]
        for (name, m, n, k) in shapes {
            for t in Set([1, maxThreads]).sorted() {
                let r = gemmCase(name, m: m, n: n, k: k, threads: t)
                if t == maxThreads { peak = max(peak, r["gflops"] as! Double) }
                rows.append(r)
                Report.emit(r)
            }
        }
        let native = nativeCase(threads: maxThreads)
        rows.append(native)
        Report.emit(native)
        for i in rows.indices { rows[i]["peak_ratio"] = (rows[i]["gflops"] as! Double) / peak }

        // 1 vs all threads shows the scaling (and that nothing oversubscribes).
        for t in Set([1, maxThreads]).sorted() {
            ComputeThreads.set(t)
            var block = blockCase(threads: t)
            block["peak_gflops"] = peak
            block["peak_ratio"] = (block["gflops"] as! Double) / peak
            rows.append(block)
            Report.emit(block)
        }
        for r in kernelCases(threads: maxThreads) {
            rows.append(r)
            Report.emit(r)
        }
        for r in attentionCases(threads: maxThreads) {
            rows.append(r)
            Report.emit(r)
        }
        Report.table(rows, columns: ["case", "threads", "precision", "ms_per_step", "gflops", "peak_ratio", "ns_per_element", "forward_ns_per_element",
                                     "fresh_allocs_per_step", "peak_rss_mb"])
    }

    func gemmCase(_ name: String, m: Int, n: Int, k: Int, threads: Int) -> Record {
        var rng = RandomGenerator(seed: 1)
        let a = Init.normal([m, k], std: 1, rng: &rng), b = Init.normal([k, n], std: 1, rng: &rng)
        let c = Tensor(zeros: [m, n])
        let run = { gemm(transA: false, transB: false, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n,
                         c: c.pointer, ldc: n, threads: threads) }
        for _ in 0..<warmup { run() }
        let ms = median((0..<steps).map { _ in timed(run) }) * 1000
        var r = Record()
        r["suite"] = "core"; r["case"] = name; r["threads"] = threads; r["steps"] = steps
        r["ms_per_step"] = ms
        r["gflops"] = 2 * Double(m * n * k) / (ms / 1000) / 1e9
        return r
    }

    /// OpenBLAS's own threading on the same 1024³ product, for reference.
    func nativeCase(threads: Int) -> Record {
        let n = 1024
        var rng = RandomGenerator(seed: 2)
        let a = Init.normal([n, n], std: 1, rng: &rng), b = Init.normal([n, n], std: 1, rng: &rng)
        let c = Tensor(zeros: [n, n])
        let run = { nativeBLASGemm(m: n, n: n, k: n, a: a.pointer, b: b.pointer, c: c.pointer, threads: threads) }
        for _ in 0..<warmup { run() }
        let ms = median((0..<steps).map { _ in timed(run) }) * 1000
        var r = Record()
        r["suite"] = "core"; r["case"] = "sgemm_1024_openblas_threads"; r["threads"] = threads; r["steps"] = steps
        r["ms_per_step"] = ms
        r["gflops"] = 2 * Double(n * n * n) / (ms / 1000) / 1e9
        return r
    }

    /// The fused non-GEMM kernels on a ViT-S MLP-sized activation (3152 × 1536), forward and
    /// backward, in ns per element: what every step pays around its GEMMs.
    func kernelCases(threads: Int) -> [Record] {
        var rng = RandomGenerator(seed: 4)
        let (rows, cols) = (3152, 1536)
        let x = Init.normal([rows, cols], std: 1, rng: &rng)
        x.requiresGrad = true
        let w = Tensor(repeating: 1, shape: [cols]), b = Tensor(zeros: [cols])
        w.requiresGrad = true
        b.requiresGrad = true
        let cases: [(String, () -> Tensor)] = [
            ("gelu", { x.gelu() }),
            ("layer_norm", { x.layerNorm(weight: w, bias: b, eps: 1e-6) }),
            ("softmax", { x.softmax() }),
        ]
        return cases.map { name, op in
            func step() {
                x.grad = nil; w.grad = nil; b.grad = nil
                let y = op()
                y.backward(seed: y.detached())
            }
            for _ in 0..<warmup { step() }
            let ms = median((0..<steps).map { _ in timed(step) }) * 1000
            let forwardMS = median((0..<steps).map { _ in timed { _ = GradMode.withoutGrad { op() } } }) * 1000
            var r = Record()
            r["forward_ns_per_element"] = forwardMS * 1e6 / Double(rows * cols)
            r["suite"] = "core"; r["case"] = "\(name)_fwd_bwd_3152x1536"; r["threads"] = threads; r["steps"] = steps
            r["ms_per_step"] = ms
            r["ns_per_element"] = ms * 1e6 / Double(rows * cols)
            return r
        }
    }

    /// Fused attention, forward + backward, on the paper presets' shapes at batch 8: Swin-B's
    /// first and third stages (6×6 windows with a relative-position bias), MAE ViT-B's encoder
    /// (visible tokens) and decoder. fp32, and bf16 where the CPU runs it.
    func attentionCases(threads: Int) -> [Record] {
        let shapes: [(String, Int, Int, Int, Int, Bool)] = [  // name, B, L, heads, head width, bias
            ("swin_b_stage1_512x36_4h", 512, 36, 4, 32, true),
            ("swin_b_stage3_32x36_16h", 32, 36, 16, 32, true),
            ("vit_b_encoder_8x50_12h", 8, 50, 12, 64, false),
            ("vit_b_decoder_8x197_16h", 8, 197, 16, 32, false),
        ]
        var rng = RandomGenerator(seed: 5)
        var out: [Record] = []
        for (name, B, L, H, dh, withBias) in shapes {
            let qkv = Init.normal([B, L, 3 * H * dh], std: 1, rng: &rng)
            qkv.requiresGrad = true
            let bias = withBias ? Init.normal([H, L, L], std: 0.02, rng: &rng) : nil
            bias?.requiresGrad = true
            for bf16 in BF16.supported ? [false, true] : [false] {
                func step() {
                    qkv.grad = nil
                    bias?.grad = nil
                    let y = BF16.gemms(bf16) { Tensor.attention(qkv: qkv, heads: H, bias: bias) }
                    BF16.gemms(bf16) { y.backward(seed: y.detached()) }
                }
                for _ in 0..<warmup { step() }
                FLOPCounter.reset()
                let times = (0..<steps).map { _ in timed(step) }
                let flops = Double(FLOPCounter.value) / Double(steps)
                let ms = median(times) * 1000
                var r = Record()
                r["suite"] = "core"; r["case"] = "attention_\(name)"; r["threads"] = threads; r["steps"] = steps
                r["precision"] = bf16 ? "bf16" : "fp32"
                r["ms_per_step"] = ms
                r["gflops"] = flops / (ms / 1000) / 1e9
                out.append(r)
            }
        }
        return out
    }

    /// ViT-S block: width 384, 6 heads, MLP 1536, 197 tokens; forward + backward per step.
    func blockCase(threads: Int) -> Record {
        let (L, D, H) = (197, 384, 6)
        var rng = RandomGenerator(seed: 3)
        let block = TransformerBlock(D, heads: H, eps: 1e-6, rng: &rng)
        let x = Init.normal([batch, L, D], std: 1, rng: &rng)
        x.requiresGrad = true
        func step() {
            block.zeroGrad()
            x.grad = nil
            let y = block(x)
            y.backward(seed: y.detached())  // any seed of y's shape: d(½‖y‖²)/dy = y
        }
        for _ in 0..<warmup { step() }
        let allocsBefore = BufferPool.shared.statistics.freshAllocations
        FLOPCounter.reset()
        let times = (0..<steps).map { _ in timed(step) }
        let flops = Double(FLOPCounter.value) / Double(steps)
        let fresh = BufferPool.shared.statistics.freshAllocations - allocsBefore
        let ms = median(times) * 1000
        var r = Record()
        r["suite"] = "core"; r["case"] = "vit_s_block_fwd_bwd"; r["batch"] = batch; r["threads"] = threads
        r["steps"] = steps; r["ms_per_step"] = ms
        r["images_per_s"] = Double(batch) / (ms / 1000)
        r["gflops"] = flops / (ms / 1000) / 1e9
        r["fresh_allocs_per_step"] = Double(fresh) / Double(steps)
        r["peak_rss_mb"] = Report.peakRSSMB()
        return r
    }
}
