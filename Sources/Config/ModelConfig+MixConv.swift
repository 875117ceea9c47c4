/// Validation of the MixMAE and ConvMAE fields (docs/methods/mixmae.md, docs/methods/convmae.md),
/// kept beside the generic
/// checks of `validate()`, which calls this. Legend: U mask units per side, L3 stage-3 tokens.
extension ModelConfig {
    func mixConvErrors() -> [FieldError] {
        var e: [FieldError] = []
        func check(_ ok: Bool, _ field: String, _ reason: @autoclosure () -> String) {
            if !ok { e.append(FieldError(field, reason())) }
        }
        if let widths = stageWidths {
            check(method == .convmae, "stage_widths", "only ConvMAE sets per-stage widths (\(method.rawValue) doubles C)")
            check(widths.count == depths.count, "stage_widths", "needs one width per stage (\(depths.count)), got \(widths.count)")
        }
        guard method == .mixmae || method == .convmae else { return e }
        let name = method == .mixmae ? "MixMAE" : "ConvMAE"
        check(decoderDim >= 1 && decoderDepth >= 1 && decoderHeads >= 1, "decoder_dim",
              "\(name) needs a decoder (dim, depth, heads ≥ 1)")
        if decoderHeads >= 1 {
            check(decoderDim % decoderHeads == 0, "decoder_heads", "decoder_dim \(decoderDim) is not divisible by \(decoderHeads)")
        }
        check(decoderDim % 4 == 0, "decoder_dim", "the decoder's sin-cos table needs a width divisible by 4, got \(decoderDim)")
        guard patchSize >= 1, maskUnit >= 1, imageSize % maskUnit == 0 else { return e }
        // Both methods mask at the encoder's last grid (MixMAE: stage 4; ConvMAE: stage 3).
        check(maskUnit == encoderStride, "mask_unit",
              "\(name) masks whole last-stage tokens: mask_unit must equal the encoder stride \(encoderStride), got \(maskUnit)")
        let units = unitGrid * unitGrid
        if method == .mixmae {
            check(embedDim % 4 == 0, "embed_dim", "the absolute sin-cos table needs a width divisible by 4, got \(embedDim)")
            let masked = Int(Float(units) * maskRatio)
            if maskRatio > 0 && maskRatio < 1 {
                check(masked >= 1 && masked < units, "mask_ratio",
                      "masks \(masked) of \(units) units; both mixed images need at least one unit")
            }
        } else {
            check(depths.count == 3, "depths", "ConvMAE has three stages (two conv, one ViT), got \(depths.count)")
            check(encoderDim % 4 == 0, "stage_widths", "the stage-3 sin-cos table needs a width divisible by 4, got \(encoderDim)")
            if maskRatio > 0 && maskRatio < 1 {
                check(Int(Float(units) * (1 - maskRatio)) >= 1, "mask_ratio", "keeps no token of \(units)")
            }
        }
        return e
    }
}
