import Config
import Foundation
import ImageData
import Models
import Optim
import TensorCore

/// How an evaluation samples its data and trains its probe.
public struct EvaluationOptions: Codable, Sendable, Equatable {
    /// Images used to fit (k-NN memory, probe training) and to score.
    public var trainLimit = 2000
    public var testLimit = 500
    public var k = 20
    public var temperature: Float = 0.07
    public var probeEpochs = 300
    public var probeLR: Float = 0.01

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case k, temperature
        case trainLimit = "train_limit", testLimit = "test_limit", probeEpochs = "probe_epochs", probeLR = "probe_lr"
    }

    /// Every field is optional in JSON; a missing one keeps its default; an unknown one is an error.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self, takes: "options take \(CodingKeys.allCases.map(\.stringValue).joined(separator: ", "))")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        trainLimit = try c.decodeIfPresent(Int.self, forKey: .trainLimit) ?? trainLimit
        testLimit = try c.decodeIfPresent(Int.self, forKey: .testLimit) ?? testLimit
        k = try c.decodeIfPresent(Int.self, forKey: .k) ?? k
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? temperature
        probeEpochs = try c.decodeIfPresent(Int.self, forKey: .probeEpochs) ?? probeEpochs
        probeLR = try c.decodeIfPresent(Float.self, forKey: .probeLR) ?? probeLR
    }

    public func problems() -> [(field: String, reason: String)] {
        var e: [(String, String)] = []
        if !(10...50_000).contains(trainLimit) { e.append(("train_limit", "must be in 10…50000, got \(trainLimit)")) }
        if !(10...10_000).contains(testLimit) { e.append(("test_limit", "must be in 10…10000, got \(testLimit)")) }
        if !(1...200).contains(k) { e.append(("k", "must be in 1…200, got \(k)")) }
        if !(temperature > 0 && temperature <= 10) { e.append(("temperature", "must be in (0, 10], got \(temperature)")) }
        if !(1...5000).contains(probeEpochs) { e.append(("probe_epochs", "must be in 1…5000, got \(probeEpochs)")) }
        if !(probeLR > 0 && probeLR <= 10) { e.append(("probe_lr", "must be in (0, 10], got \(probeLR)")) }
        return e
    }
}

/// Accuracies of one classifier on three feature sets.
public struct Accuracies: Codable, Sendable, Equatable {
    public var encoder: Double
    public var rawPixels: Double
    public var randomEncoder: Double

    enum CodingKeys: String, CodingKey {
        case encoder
        case rawPixels = "raw_pixels", randomEncoder = "random_encoder"
    }
}

public struct EvaluationResult: Codable, Sendable, Equatable {
    public var dataset: String
    public var trainCount: Int
    public var testCount: Int
    public var classes: Int
    public var featureDim: Int
    public var knn: Accuracies
    public var linearProbe: Accuracies
    public var options: EvaluationOptions

    enum CodingKeys: String, CodingKey {
        case dataset, classes, knn, options
        case trainCount = "train_count", testCount = "test_count", featureDim = "feature_dim", linearProbe = "linear_probe"
    }
}

/// k-NN (cosine, temperature-weighted votes, as in the DINO / InstDisc protocol) and a linear
/// probe (softmax regression on standardised frozen features) — each on the trained encoder's
/// mean-pooled features, on raw pixels (pooled to ≤ 16×16), and on a random encoder.
public struct Evaluator {
    public let options: EvaluationOptions

    public init(options: EvaluationOptions) { self.options = options }

    public func evaluate(model: any MIMModel, config: JobConfig, train: any ImageDataset,
                         test: (any ImageDataset)?) throws -> EvaluationResult {
        guard train.info.labelled else {
            throw InferenceError.badParameter("dataset", "'\(train.info.id)' has no labels; evaluation needs a labelled dataset")
        }
        // A dataset without a separate test split is split 80/20 by a fixed shuffle.
        let (trainSet, testSet): (any ImageDataset, any ImageDataset)
        if let test {
            trainSet = Subset(train, indices: Array(0..<min(train.count, options.trainLimit)))
            testSet = Subset(test, indices: Array(0..<min(test.count, options.testLimit)))
        } else {
            var rng = RandomGenerator(seed: 0x65_76_61_6C)
            let order = rng.permutation(train.count)
            let nTest = min(options.testLimit, max(1, train.count / 5))
            testSet = Subset(train, indices: Array(order.prefix(nTest)))
            trainSet = Subset(train, indices: Array(order.dropFirst(nTest).prefix(options.trainLimit)))
        }
        let size = config.model.imageSize
        let random = try ModelRegistry.make(config.model, seed: 0x7261_6E64, decoderBlocks: false)
        func extract(_ set: any ImageDataset) throws -> (encoder: Matrix, raw: Matrix, random: Matrix, labels: [Int]) {
            let batches = EvaluationBatches(dataset: set, batchSize: 64, imageSize: size)
            var enc = Matrix(), raw = Matrix(), rnd = Matrix(), labels: [Int] = []
            for b in 0..<batches.batchCount {
                let batch = try batches.batch(b)
                enc.append(model.features(batch.images, pool: .mean))
                rnd.append(random.features(batch.images, pool: .mean))
                raw.append(Self.pooledPixels(batch.images))
                labels += batch.indices.map { set.label(at: $0) ?? 0 }
            }
            return (enc, raw, rnd, labels)
        }
        let a = try extract(trainSet), b = try extract(testSet)
        let classes = max(train.info.classes.count, (a.labels + b.labels).max().map { $0 + 1 } ?? 1)
        func knn(_ x: Matrix, _ y: Matrix) -> Double { Self.knnAccuracy(train: x, trainLabels: a.labels, test: y, testLabels: b.labels, classes: classes) }
        func probe(_ x: Matrix, _ y: Matrix) -> Double { Self.probeAccuracy(train: x, trainLabels: a.labels, test: y, testLabels: b.labels, classes: classes) }
        return EvaluationResult(
            dataset: train.info.id, trainCount: a.labels.count, testCount: b.labels.count, classes: classes, featureDim: a.encoder.cols,
            knn: Accuracies(encoder: knn(a.encoder, b.encoder), rawPixels: knn(a.raw, b.raw), randomEncoder: knn(a.random, b.random)),
            linearProbe: Accuracies(encoder: probe(a.encoder, b.encoder), rawPixels: probe(a.raw, b.raw),
                                    randomEncoder: probe(a.random, b.random)),
            options: options)
    }

    // MARK: - Classifiers

    func knnAccuracy(train: Matrix, trainLabels: [Int], test: Matrix, testLabels: [Int], classes: Int) -> Double {
        Self.knnAccuracy(train: train, trainLabels: trainLabels, test: test, testLabels: testLabels, classes: classes, k: options.k, temperature: options.temperature)
    }

    static func knnAccuracy(train: Matrix, trainLabels: [Int], test: Matrix, testLabels: [Int], classes: Int,
                            k: Int = 20, temperature: Float = 0.07) -> Double {
        let x = train.rowNormalised(), y = test.rowNormalised()
        var sims = [Float](repeating: 0, count: y.rows * x.rows)
        x.values.withUnsafeBufferPointer { xp in
            y.values.withUnsafeBufferPointer { yp in
                sims.withUnsafeMutableBufferPointer { sp in
                    gemm(transA: false, transB: true, m: y.rows, n: x.rows, k: x.cols, a: yp.baseAddress!, lda: y.cols,
                         b: xp.baseAddress!, ldb: x.cols, c: sp.baseAddress!, ldc: x.rows)
                }
            }
        }
        let kk = min(k, x.rows)
        var correct = 0
        for i in 0..<y.rows {
            let row = sims[(i * x.rows)..<((i + 1) * x.rows)]
            let top = row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(kk)
            var votes = [Double](repeating: 0, count: classes)
            for j in top { votes[trainLabels[j - i * x.rows]] += Double(exp(row[j] / temperature)) }
            if votes.indices.max(by: { votes[$0] < votes[$1] }) == testLabels[i] { correct += 1 }
        }
        return Double(correct) / Double(max(1, y.rows))
    }

    func probeAccuracy(train: Matrix, trainLabels: [Int], test: Matrix, testLabels: [Int], classes: Int) -> Double {
        Self.probeAccuracy(train: train, trainLabels: trainLabels, test: test, testLabels: testLabels, classes: classes,
                           epochs: options.probeEpochs, lr: options.probeLR)
    }

    /// Full-batch softmax regression on features standardised by the training set's statistics,
    /// trained with the same AdamW as pretraining; the gradients are written by hand into the
    /// parameters' `grad`, as AdamW's own tests teacher-force them.
    static func probeAccuracy(train: Matrix, trainLabels: [Int], test: Matrix, testLabels: [Int], classes: Int,
                              epochs: Int = 300, lr: Float = 0.01) -> Double {
        let (mean, std) = train.columnStatistics()
        let x = train.standardised(mean: mean, std: std), y = test.standardised(mean: mean, std: std)
        let n = x.rows, d = x.cols, c = classes
        let w = Tensor(zeros: [d, c]), bias = Tensor(zeros: [c])
        w.grad = Tensor(zeros: [d, c])
        bias.grad = Tensor(zeros: [c])
        let (gw, gb) = (w.grad!.pointer, bias.grad!.pointer)
        // The bias, 1-D, gets no decay (AdamW's default rule).
        let optimizer = AdamW(parameters: [("weight", w), ("bias", bias)], weightDecay: 1e-4, betas: (0.9, 0.999))
        var logits = [Float](repeating: 0, count: n * c)
        for _ in 0..<epochs {
            x.values.withUnsafeBufferPointer { xp in
                logits.withUnsafeMutableBufferPointer { lp in
                    gemm(transA: false, transB: false, m: n, n: c, k: d, a: xp.baseAddress!, lda: d, b: w.pointer, ldb: c,
                         c: lp.baseAddress!, ldc: c)
                }
            }
            gb.update(repeating: 0, count: c)
            for i in 0..<n {
                var mx = -Float.infinity
                for j in 0..<c { logits[i * c + j] += bias.pointer[j]; mx = max(mx, logits[i * c + j]) }
                var sum: Float = 0
                for j in 0..<c { logits[i * c + j] = exp(logits[i * c + j] - mx); sum += logits[i * c + j] }
                for j in 0..<c {
                    logits[i * c + j] = (logits[i * c + j] / sum - (j == trainLabels[i] ? 1 : 0)) / Float(n)  // ∂loss/∂logit
                    gb[j] += logits[i * c + j]
                }
            }
            x.values.withUnsafeBufferPointer { xp in
                logits.withUnsafeBufferPointer { lp in
                    gemm(transA: true, transB: false, m: d, n: c, k: n, a: xp.baseAddress!, lda: d, b: lp.baseAddress!, ldb: c,
                         c: gw, ldc: c)
                }
            }
            optimizer.step(lr: lr)
        }
        var correct = 0
        for i in 0..<y.rows {
            var best = 0, bestScore = -Float.infinity
            for j in 0..<c {
                var s = bias.pointer[j]
                for k in 0..<d { s += y.values[i * d + k] * w.pointer[k * c + j] }
                if s > bestScore { bestScore = s; best = j }
            }
            if best == testLabels[i] { correct += 1 }
        }
        return Double(correct) / Double(max(1, y.rows))
    }

    /// (B, 3, S, S) images average-pooled to at most 16×16 per channel, flattened.
    static func pooledPixels(_ images: Tensor) -> Tensor {
        let b = images.shape[0], s = images.shape[2], f = max(1, s / 16), o = s / f
        let out = Tensor(zeros: [b, 3 * o * o])
        for n in 0..<b {
            for ch in 0..<3 {
                for y in 0..<(o * f) {
                    for x in 0..<(o * f) {
                        out.pointer[n * 3 * o * o + ch * o * o + (y / f) * o + x / f] += images.pointer[((n * 3 + ch) * s + y) * s + x] / Float(f * f)
                    }
                }
            }
        }
        return out
    }
}

/// A row-major float matrix grown batch by batch.
struct Matrix {
    var values: [Float] = []
    var rows = 0
    var cols = 0

    init() {}

    init(rows: Int, cols: Int, values: [Float]) {
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    mutating func append(_ t: Tensor) {
        let r = t.shape[0], c = t.count / max(r, 1)
        precondition(cols == 0 || cols == c, "feature width changed from \(cols) to \(c)")
        cols = c
        rows += r
        values += UnsafeBufferPointer(start: t.pointer, count: t.count)
    }

    func rowNormalised() -> Matrix {
        var v = values
        for i in 0..<rows {
            var s: Float = 0
            for j in 0..<cols { s += v[i * cols + j] * v[i * cols + j] }
            let inv = 1 / max(s.squareRoot(), 1e-12)
            for j in 0..<cols { v[i * cols + j] *= inv }
        }
        return Matrix(rows: rows, cols: cols, values: v)
    }

    func columnStatistics() -> (mean: [Float], std: [Float]) {
        var mean = [Float](repeating: 0, count: cols), sq = mean
        for i in 0..<rows { for j in 0..<cols { mean[j] += values[i * cols + j]; sq[j] += values[i * cols + j] * values[i * cols + j] } }
        let n = Float(max(rows, 1))
        let std = (0..<cols).map { j in max((sq[j] / n - (mean[j] / n) * (mean[j] / n)).squareRoot(), 1e-6) }
        return (mean.map { $0 / n }, std)
    }

    func standardised(mean: [Float], std: [Float]) -> Matrix {
        var v = values
        for i in 0..<rows { for j in 0..<cols { v[i * cols + j] = (v[i * cols + j] - mean[j]) / std[j] } }
        return Matrix(rows: rows, cols: cols, values: v)
    }
}

/// Some images of a dataset, renumbered 0 ..< indices.count.
struct Subset: ImageDataset {
    let base: any ImageDataset
    let indices: [Int]

    init(_ base: any ImageDataset, indices: [Int]) {
        self.base = base
        self.indices = indices
    }

    var info: DatasetInfo {
        var i = base.info
        i.count = indices.count
        return i
    }

    var count: Int { indices.count }
    func image(at index: Int) throws -> RGBImage { try base.image(at: indices[index]) }
    func label(at index: Int) -> Int? { base.label(at: indices[index]) }
}
