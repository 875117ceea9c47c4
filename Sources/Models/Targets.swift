import TensorCore

/// Targets, loss and reconstruction of the methods that predict mask units of pixels (all but
/// SimMIM, which predicts the image): docs/methods/common.md#b9-norm-pixel-targets and
/// #b10-masked-losses.
///
/// Legend: B batch, U unit-grid side, q mask unit in pixels (the decoder's patch).
extension UnitPredictor {
    /// Unit targets (B, U², q²·3), normalised per unit when `normPixLoss`.
    func target(_ images: Tensor) -> Tensor {
        let patches = Patches.patchify(images, patch: config.maskUnit)
        return config.normPixLoss ? Patches.normalizedTarget(patches) : patches.copy()
    }

    /// MSE of `pred` (B, U², q²·3) against the targets of `images`, on the units `mask` (B, U²) weighs.
    func unitLoss(_ pred: Tensor, images: Tensor, mask: Tensor) -> Tensor {
        let target = GradMode.withoutGrad { self.target(images) }
        return Tensor.maskedMSE(pred, target: target, mask: mask)
    }

    /// The units a 0/1 mask (B, U²) scores: their decoder token rows (of the B·T tokens, past
    /// MAE's class rows) and their target rows (of the B·U² units), in raster order per sample.
    func scoredRows(_ mask: Tensor) -> (tokens: RowIndex, targets: RowIndex) {
        let (B, units) = (mask.shape[0], unitCount)
        precondition(mask.count == B * units, "a unit mask (B, \(units)), got \(mask.shape)")
        let c = decoder.classToken ? 1 : 0, T = c + units
        var tokens: [Int32] = [], targets: [Int32] = []
        for b in 0..<B {
            for u in 0..<units {
                let m = mask.pointer[b * units + u]
                precondition(m == 0 || m == 1, "a unit mask holds 0 or 1, got \(m)")
                if m == 1 {
                    tokens.append(Int32(b * T + c + u))
                    targets.append(Int32(b * units + u))
                }
            }
        }
        return (RowIndex(tokens, sourceRows: B * T), RowIndex(targets, sourceRows: B * units))
    }

    /// `unitLoss` for predictions of the scored units alone, (S, q²·3) for the target rows
    /// `scored` (`scoredRows`): the same mean over the same units, in the same order.
    func scoredUnitLoss(_ pred: Tensor, images: Tensor, scored: RowIndex) -> Tensor {
        let target = GradMode.withoutGrad {
            let all = self.target(images)
            return all.gatherRows(scored, shape: [scored.count, all.dim(-1)])
        }
        return Tensor.maskedMSE(pred, target: target, mask: Tensor(repeating: 1, shape: [scored.count]))
    }

    /// Predictions (B, U², q²·3) as an image (B, 3, H, W) with the pixel mask of `units`
    /// (B, U, U). Norm-pixel predictions are de-normalised with each target unit's own
    /// statistics (the MAE demo), which the note says.
    func reconstruction(_ pred: Tensor, images: Tensor, units: Tensor) -> Reconstruction {
        var pixels = pred, note: String?
        if config.normPixLoss {
            let stats = Patches.statistics(Patches.patchify(images, patch: config.maskUnit))
            pixels = Patches.denormalize(pred, mean: stats.mean, std: stats.std)
            note = "norm-pixel predictions de-normalised with ground-truth patch statistics"
        }
        let image = Patches.unpatchify(pixels, patch: config.maskUnit, imageSize: config.imageSize)
        return Reconstruction(image: image, pixelMask: pixelMask(units: units), note: note)
    }

    /// `MIMModel.reconstruct` for methods whose forward pass predicts what `reconstruct` shows:
    /// the forward pass's prediction, with its unit mask (B, U²) or (B, U, U).
    func forwardReconstruction(_ images: Tensor, mask spec: MaskSpec) -> Reconstruction {
        GradMode.withoutGrad {
            let out = forward(images, mask: spec)
            let U = config.unitGrid
            return reconstruction(out.prediction, images: images, units: out.mask.reshaped([images.shape[0], U, U]))
        }
    }
}
