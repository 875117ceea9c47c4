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
