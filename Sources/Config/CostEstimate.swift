/// What one training job of a configuration costs, estimated from the configuration alone before
/// anything is allocated, so a submission that would exhaust the machine is refused with a 422
/// instead of killing the server when a slot claims it.
///
/// The model is a list of transformer-like stages (tokens per sample, width, heads, keys each
/// query attends to, blocks), read off the same shapes the model files build: MAE's encoder on
/// the visible tokens and its decoder on all of them, Swin stages on full, compacted (UM-MAE) or
/// visible-only (GreenMIM) grids, MixMAE's dual decoder, ConvMAE's two convolutional stages and its
/// ViT stage. Per block, training keeps about `savedPerTokenWidth(r)` floats per token and channel
/// for the backward pass, the gradients of the block running its backward included (its input,
/// q/k/v, the attention output, the residual stream between the halves and the MLP's hidden
/// layer; no norm output, GELU output or branch output before its residual sum is kept). Attention keeps no
/// probabilities (its backward makes them again), but a Swin-style block's backward holds one
/// float per probability for its learned position bias's gradient while it runs. With
/// recomputation (`StepMemory.recompute`) a block keeps only its input, and one block at a time holds its
/// insides and their gradients. Gradients: without clipping each is applied and dropped as soon
/// as it is complete (`AdamW.minimize`), so the step peaks at the end of the forward pass with
/// weights, moments and activations. Clipping by the global norm holds all of them until the
/// update, but they grow while the backward pass frees the activations (the tape keeps no
/// tensor whose values no backward reads), so the step peaks with the larger of the two.
/// `mimserve-bench train`
/// prints this estimate beside the measured peak RSS, and a test holds every preset within 30%
/// of it (Tests/TrainerTests/CostEstimateTests.swift); on a 2-core AMD EPYC every preset came
/// within 11% at batch 2 and 8.
public struct CostEstimate: Sendable, Codable, Equatable {
    public var parameters: Int
    /// The weights, float32 (a fine-tune also holds its pretraining model's untrained decoder),
    /// and in bf16 without recomputation their bf16 copies.
    public var weightBytes: Int
    /// AdamW's two moments, and the gradients when the step holds them all at once (which
    /// then share the peak with the activations: `peakBytes` counts the larger of the two).
    public var optimizerBytes: Int
    /// What one step keeps for its backward pass at the job's batch, plus the working set of the backward.
    public var activationBytes: Int
    /// Batches prepared ahead by the data loader.
    public var prefetchBytes: Int
    /// One checkpoint on disk: weights and both moments.
    public var checkpointBytes: Int
    /// Forward and backward of one step.
    public var flopsPerStep: Double
    /// The whole process at its peak while training this job (what `--max-job-memory` limits).
    public var peakBytes: Int

    enum CodingKeys: String, CodingKey {
        case parameters, flopsPerStep = "flops_per_step", peakBytes = "peak_bytes"
        case weightBytes = "weight_bytes", optimizerBytes = "optimizer_bytes", activationBytes = "activation_bytes"
        case prefetchBytes = "prefetch_bytes", checkpointBytes = "checkpoint_bytes"
    }
}

extension CostEstimate {
    /// Resident memory of the process before any model exists (runtime, libraries, loader threads).
    static let baselineBytes = 30 << 20
    /// Floats kept per token and channel by one block, for MLP ratio r, with the gradients its
    /// backward holds while it runs. A convolutional block (ConvMAE's first stages) keeps no q,
    /// k, v or attention output: its input, the masked 1×1 conv output, the depthwise conv
    /// output, the residual stream between its halves and the MLP's hidden layer, and two
    /// gradient maps in flight.
    static func savedPerTokenWidth(_ r: Int, attention: Bool = true) -> Double { (attention ? 10 : 6) + Double(r) }
    /// Floats per pixel of the batch that the step keeps around the model (input, target, prediction, loss terms).
    static let savedPerPixel = 6.0
    /// Batches the loader holds ahead.
    static let prefetchDepth = 2

    /// One stack of blocks on `tokens` tokens per sample.
    struct Stage {
        var tokens: Int, width: Int, heads: Int, keys: Int, blocks: Int, mlpRatio: Int
        /// Swin's relative-position table entries per head (0 for plain attention).
        var positionTable = 0
    }
}

/// What shapes a training step's memory besides the model and the batch.
public struct StepMemory: Sendable, Equatable {
    /// Every gradient is held at once (clipping by the global norm needs them all).
    public var holdsAllGradients: Bool
    /// Blocks are recomputed in the backward pass (`"recompute": true`).
    public var recompute: Bool
    /// GEMMs run in bf16 (`"precision": "bf16"`): the optimizer keeps each weight matrix
    /// rounded to bf16 beside it, half the weights' size again, unless blocks are recomputed
    /// (GEMMs then round each weight as they read it).
    public var bf16: Bool

    public init(holdsAllGradients: Bool = true, recompute: Bool = false, bf16: Bool = false) {
        self.holdsAllGradients = holdsAllGradients
        self.recompute = recompute
        self.bf16 = bf16
    }
}

extension TrainingConfig {
    /// How this job's steps hold memory.
    public var stepMemory: StepMemory {
        StepMemory(holdsAllGradients: clipGrad != nil, recompute: recompute ?? false, bf16: precision == .bf16)
    }
}

extension ModelConfig {
    /// The cost of training this configuration at `batch` images per step: pretraining, or with
    /// `finetuneClasses` fine-tuning its encoder under a linear head of that many classes (every
    /// token visible, no decoder).
    public func estimate(batch: Int, step: StepMemory = StepMemory(), finetuneClasses: Int? = nil) -> CostEstimate {
        // In Double throughout: a hostile configuration must give a huge estimate, not an overflow.
        let (stages, extraParams, extraFloatsPerSample, idleParams) = costStages(finetune: finetuneClasses != nil)
        var params = extraParams + Double(finetuneClasses ?? 0) * Double(encoderDim + 1)
        var savedPerSample = extraFloatsPerSample + CostEstimate.savedPerPixel * 3 * Double(imageSize) * Double(imageSize)
        var flopsPerSample = 0.0, largestBlock = 0.0, biasGradientScores = 0.0
        for s in stages {
            let c = Double(s.width), r = Double(s.mlpRatio), t = Double(s.tokens), b = Double(s.blocks)
            // qkv (3C² + 3C), proj (C² + C), fc1 (rC² + rC), fc2 (rC² + C), two norms (4C).
            params += b * ((4 + 2 * r) * c * c + (9 + r) * c + Double(s.heads) * Double(s.positionTable))
            let block = t * c * CostEstimate.savedPerTokenWidth(s.mlpRatio, attention: s.heads > 0)
            // Recomputed: each block keeps its input; one at a time holds its insides and, while
            // its backward runs, about as much again in gradients.
            savedPerSample += step.recompute ? b * t * c : b * block
            largestBlock = max(largestBlock, 2 * block)
            if s.positionTable > 0 { biasGradientScores = max(biasGradientScores, Double(s.heads) * t * Double(s.keys)) }
            flopsPerSample += b * (2 * t * (4 + 2 * r) * c * c + 4 * t * Double(s.keys) * c)
        }
        savedPerSample += biasGradientScores + (step.recompute ? largestBlock : 0)
        let floatBytes = Double(MemoryLayout<Float>.size), n = Double(batch)
        let weights = params * floatBytes, idleWeights = idleParams * floatBytes
        let copies = step.bf16 && !step.recompute ? weights / 2 : 0
        let activations = savedPerSample * n * floatBytes
        let prefetch = Double(CostEstimate.prefetchDepth) * n * 3 * Double(imageSize) * Double(imageSize) * floatBytes
        let gradients = step.holdsAllGradients ? weights : 0, optimizer = 2 * weights + gradients
        let peak = Double(CostEstimate.baselineBytes) + weights + idleWeights + copies + optimizer
            + max(activations, gradients) - gradients + prefetch
        func bytes(_ x: Double) -> Int { x < 9e18 ? Int(x) : Int.max }
        return CostEstimate(
            parameters: bytes(params), weightBytes: bytes(weights + idleWeights + copies), optimizerBytes: bytes(optimizer),
            activationBytes: bytes(activations), prefetchBytes: bytes(prefetch), checkpointBytes: bytes(3 * weights),
            flopsPerStep: (step.recompute ? 4 : 3) * flopsPerSample * n, peakBytes: bytes(peak))
    }

    /// The blocks of every encoder and decoder stage, the parameters outside them (embeddings,
    /// merging, heads, tokens) and floats per sample kept outside them (patch tokens, merges).
    /// Fine-tuning runs the encoder alone on every token: nothing masked, compacted or decoded.
    /// The decoder's blocks are not built then, but its embedding, mask token and prediction
    /// layer are (the classifier wraps the whole model), so they count as idle parameters:
    /// weights in memory, never trained.
    func costStages(finetune: Bool = false)
        -> (stages: [CostEstimate.Stage], params: Double, floatsPerSample: Double, idleParams: Double) {
        typealias Stage = CostEstimate.Stage
        let n = grid * grid
        let visible = { (tokens: Int) in finetune ? tokens : max(1, Int(Double(tokens) * Double(1 - maskRatio))) }
        let units = unitGrid * unitGrid
        let pixelsPerUnit = maskUnit * maskUnit * 3
        let r = mlpRatio
        let stageTokens = stageGrids.map { $0 * $0 }
        var stages: [Stage] = []
        var params = Double(3 * patchSize * patchSize + 3) * Double(embedDim)   // patch embedding (+ norm)
        var floats = 0.0, idle = 0.0
        // An MAE-style decoder on `tokens` tokens per sample predicting `outputs` values per token.
        func decoder(tokens: Int, outputs: Int) {
            guard decoderDepth > 0 else { return }
            if finetune {
                let c = Double(decoderDim)
                idle += Double(encoderDim + outputs + 4) * c
                return
            }
            stages.append(Stage(tokens: tokens, width: decoderDim, heads: decoderHeads, keys: tokens,
                                blocks: decoderDepth, mlpRatio: 4))
            params += Double(encoderDim + outputs + 4) * Double(decoderDim)
            floats += Double(tokens) * Double(2 * decoderDim + 2 * outputs)
        }
        // Swin stages on grids `sides` with tokens per stage from `tokens(s)`.
        func swin(tokens: (Int) -> Int) {
            for s in depths.indices {
                let g = stageGrids[s], c = stageDims[s], w = min(windowSize, g)
                stages.append(Stage(tokens: tokens(s), width: c, heads: heads[s], keys: w * w, blocks: depths[s],
                                    mlpRatio: r, positionTable: (2 * w - 1) * (2 * w - 1)))
                if s > 0 { params += Double(4 * c + 8) * Double(stageDims[s - 1]) }  // patch merging
                floats += 4 * Double(tokens(s)) * Double(c)
            }
        }
        switch method {
        case .mae:
            stages.append(Stage(tokens: visible(n) + 1, width: embedDim, heads: heads[0], keys: visible(n) + 1,
                                blocks: depths[0], mlpRatio: r))
            params += Double(embedDim)
            decoder(tokens: n + 1, outputs: patchSize * patchSize * 3)
        case .simmim:
            swin { stageTokens[$0] }
            let head = Double(encoderDim) * Double(encoderStride * encoderStride * 3)  // the one-layer prediction head
            if finetune {
                idle += head
            } else {
                params += head
                floats += Double(encoderStride * encoderStride * 3) * Double(stageTokens.last ?? 0)
            }
        case .mixmae:
            swin { stageTokens[$0] }
            decoder(tokens: 2 * units, outputs: pixelsPerUnit)
        case .ummae:
            // One unit of every 2×2 is kept and compacted: a quarter of the tokens at every stage.
            swin { finetune ? stageTokens[$0] : max(1, stageTokens[$0] / 4) }
            decoder(tokens: units, outputs: pixelsPerUnit)
            params += Double(posMLPDim ?? 0) * Double(2 + heads.reduce(0, +))
        case .greenmim:
            swin { visible(stageTokens[$0]) }
            decoder(tokens: units, outputs: pixelsPerUnit)
        case .convmae:
            // Two convolutional stages over the whole map (a 5×5 depthwise conv and an MLP per
            // block), then a ViT stage on the visible tokens of the last grid.
            for s in 0..<(depths.count - 1) {
                let g = stageGrids[s], c = stageDims[s]
                stages.append(Stage(tokens: g * g, width: c, heads: 0, keys: 0, blocks: depths[s], mlpRatio: r))
                params += Double(depths[s] * 25) * Double(c)
            }
            let g3 = stageGrids.last ?? grid, d = encoderDim
            // Every stage's embedding keeps its patchified input, the conv output, the LN and the
            // GELU outputs; the fusion keeps the stage-1 and stage-2 maps patchified for their
            // strided convs and the two (B, L, D) fusion terms.
            let maps = zip(stageGrids, stageDims).map { Double($0 * $0) * Double($1) }
            let inputs = [3 * Double(imageSize) * Double(imageSize)] + maps.dropLast()
            floats += 3 * maps.reduce(0, +) + inputs.reduce(0, +)
            floats += maps.dropLast().reduce(0, +) + 2 * Double(g3 * g3) * Double(d)
            stages.append(Stage(tokens: visible(g3 * g3), width: d, heads: heads.last ?? 1, keys: visible(g3 * g3),
                                blocks: depths.last ?? 1, mlpRatio: r))
            decoder(tokens: g3 * g3, outputs: encoderStride * encoderStride * 3)
        }
        return (stages, params, floats, idle)
    }
}
