import Config
import NN
import TensorCore

/// The MAE-style decoder that MAE, ConvMAE, UM-MAE, GreenMIM and MixMAE share
/// (docs/methods/common.md#b8-decoder-placement-of-latents): the encoder's latents, projected to
/// the decoder width, and a learned mask token are placed on the unit grid, the fixed sin-cos
/// table (B2) is added, and narrow ViT blocks predict every unit's q²·3 pixels. The methods
/// differ only in which latent row lands on which unit, the `placement`.
/// Names at the model's top level, as in `models_mae.py`: `decoder_embed`, `mask_token`,
/// `decoder_pos_embed` (fixed), `decoder_blocks.i`, `decoder_norm`, `decoder_pred`.
///
/// Legend: B batch, n latents per sample, D encoder width, R embedded latent rows of the batch,
/// T decoder tokens per sample (U², plus MAE's class row), Dd decoder width, q mask unit in pixels.
struct MAEDecoder {
    let embed: Linear
    let maskToken: Tensor  // (1, 1, Dd)
    let posEmbed: Tensor   // (1, T, Dd), fixed
    let blocks: ModuleList<TransformerBlock>
    let norm: LayerNorm
    let pred: Linear
    /// A class row in front of each sample's tokens (MAE): placed and attended, never predicted.
    let classToken: Bool

    /// - classToken: a class latent in front of each sample's, with a zero position row (MAE).
    /// - embedWidth: the width `decoder_embed` maps to, Dd unless the method reshapes it (UM-MAE).
    /// - maskToken: the token when the method draws it earlier, where its reference does (MAE
    ///   before its encoder, MixMIM before `decoder_embed`); nil draws it right after `decoder_embed`.
    /// - withBlocks: false builds no blocks (the backbone of a fine-tune, which never decodes).
    ///   The blocks are drawn after everything else but `pred`, so the encoder's weights are the same.
    init(config c: ModelConfig, classToken: Bool, embedWidth: Int? = nil, maskToken: Tensor? = nil,
         withBlocks: Bool = true, rng: inout RandomGenerator) {
        let Dd = c.decoderDim
        self.classToken = classToken
        embed = Linear(c.encoderDim, embedWidth ?? Dd, rng: &rng)
        self.maskToken = maskToken ?? Init.normal([1, 1, Dd], std: 0.02, rng: &rng)
        posEmbed = SinCos.table2D(dim: Dd, grid: c.unitGrid, classToken: classToken)
        blocks = ModuleList(depth: withBlocks ? c.decoderDepth : 0, dim: Dd, heads: c.decoderHeads, mlpRatio: c.mlpRatio,
                            eps: c.layerNormEps, rng: &rng)
        norm = LayerNorm(Dd, eps: c.layerNormEps)
        pred = Linear(Dd, c.maskUnit * c.maskUnit * 3, rng: &rng)
    }

    /// Registers the parts on `model` under the reference names.
    func register(in model: Module) {
        model.child("decoder_embed", embed)
        model.parameter("mask_token", maskToken)
        model.buffer("decoder_pos_embed", posEmbed)
        model.child("decoder_blocks", blocks)
        model.child("decoder_norm", norm)
        model.child("decoder_pred", pred)
    }

    /// Latents (B, n, D) → embedded rows (B·n, Dd).
    func embedRows(_ latent: Tensor) -> Tensor {
        let d = embed(latent)
        return d.reshaped([d.count / d.dim(-1), d.dim(-1)])
    }

    /// Embedded rows (R, Dd) and the mask token as row R, placed by `placement` ((B·T) rows of
    /// those R + 1) → predictions (B, U², q²·3).
    func callAsFunction(rows: Tensor, placement: RowIndex) -> Tensor {
        let T = posEmbed.shape[1]
        let out = pred(norm(blocks(placed(rows, placement))))  // (B, T, q²·3)
        return classToken ? out.slice(axis: 1, start: 1, length: T - 1) : out
    }

    /// As `callAsFunction(rows:placement:)` for the decoder tokens `scored` alone (rows of the
    /// B·T tokens, class rows included): their predictions (S, q²·3), all a loss that scores
    /// only them reads. The last block attends over every token and runs its MLP on the scored
    /// rows alone (`TransformerBlock.callAsFunction(_:keepingRows:)`), and so do the final norm
    /// and `pred`: a loss on 3 tokens of 4 (MAE, UM-MAE) skips a quarter of that work.
    func callAsFunction(rows: Tensor, placement: RowIndex, predicting scored: RowIndex) -> Tensor {
        let x = placed(rows, placement)
        guard let last = blocks.items.last else { return pred(norm(x.gatherRows(scored, shape: [scored.count, x.dim(-1)]))) }
        let h = blocks.items.dropLast().reduce(x) { h, block in block(h) }
        return pred(norm(last(h, keepingRows: scored)))
    }

    /// The decoder's input (B, T, Dd): the rows (R, Dd) and the mask token as row R placed by
    /// `placement`, plus the position table.
    private func placed(_ rows: Tensor, _ placement: RowIndex) -> Tensor {
        let Dd = rows.dim(-1), T = posEmbed.shape[1]
        let all = Tensor.concat([rows, maskToken.reshaped([1, Dd])], axis: 0)  // (R + 1, Dd)
        return all.gatherRows(placement, shape: [placement.count / T, T, Dd]) + posEmbed
    }
}

/// A method built on `MAEDecoder`: it predicts mask units of pixels, so targets, loss and
/// reconstruction are shared (`Targets.swift`).
protocol UnitPredictor: MIMModel {
    var decoder: MAEDecoder { get }
}

extension UnitPredictor {
    /// U², the decoder's tokens (besides MAE's class row).
    var unitCount: Int { config.unitGrid * config.unitGrid }

    /// The decoder's fixed position table, (1, T, Dd).
    var decoderPosEmbed: Tensor { decoder.posEmbed }
}
