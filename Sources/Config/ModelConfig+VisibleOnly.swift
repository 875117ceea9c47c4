/// Options of the two visible-only Swin methods (UM-MAE, GreenMIM) and their validation.
/// They live in `ModelConfig` as optional fields so older configs still decode; nil means the
/// method's default below.

/// Where the decoder places the encoder's latents (docs/methods/common.md#b8-decoder-placement-of-latents).
public enum DecoderPositions: String, Codable, Sendable, CaseIterable {
    /// Each latent at its unit's true position (the default).
    case `true`
    /// The reference code's ordering slip, kept to reproduce its numbers: UM-MAE gives the
    /// group-raster latents the table rows of the kept units in raster order; GreenMIM unshuffles
    /// raster-ordered latents as if they were in noise order (B8).
    case reference
}

/// How GreenMIM picks its group size (docs/methods/greenmim.md#grouping).
public enum GroupingMode: String, Codable, Sendable, CaseIterable {
    /// The cost-minimising group size over g_min … g_max (the default).
    case search
    /// g = min(w², max n_i), as the reference code does.
    case fixed
}

extension ModelConfig {
    /// UM-MAE's share of kept units shown as the mask token (default 0.25).
    public var resolvedSecondaryMaskRatio: Float { secondaryMaskRatio ?? 0.25 }
    /// UM-MAE's coordinate-MLP hidden width (default 32).
    public var resolvedPosMLPDim: Int { posMLPDim ?? 32 }
    public var resolvedDecoderPositions: DecoderPositions { decoderPositions ?? .true }
    public var resolvedGrouping: GroupingMode { grouping ?? .search }

    /// UM-MAE: tokens per mask unit side (K).
    public var unitTokens: Int { maskUnit / max(patchSize, 1) }

    /// The UM-MAE and GreenMIM constraints, each naming its field.
    func visibleOnlyErrors() -> [FieldError] {
        guard method == .ummae || method == .greenmim else {
            let set: [(String, Bool)] = [("secondary_mask_ratio", secondaryMaskRatio != nil), ("pos_mlp_dim", posMLPDim != nil),
                                         ("decoder_positions", decoderPositions != nil), ("grouping", grouping != nil),
                                         ("group_size_max", groupSizeMax != nil)]
            return set.filter(\.1).map { FieldError($0.0, "applies to ummae and greenmim only, not \(method.rawValue)") }
        }
        var e: [FieldError] = []
        func check(_ ok: Bool, _ field: String, _ reason: @autoclosure () -> String) {
            if !ok { e.append(FieldError(field, reason())) }
        }
        // Guard the arithmetic below: the generic checks already report these fields.
        guard patchSize >= 1, maskUnit >= patchSize, imageSize % maskUnit == 0, !depths.isEmpty, windowSize >= 1 else { return e }
        check(decoderDim >= 1 && decoderDepth >= 1 && decoderHeads >= 1, "decoder_dim",
              "\(method.rawValue) needs a decoder (dim, depth, heads ≥ 1)")
        if decoderHeads >= 1 { check(decoderDim % decoderHeads == 0, "decoder_heads", "decoder_dim \(decoderDim) is not divisible by \(decoderHeads)") }
        check(decoderDim % 4 == 0, "decoder_dim", "the sin-cos decoder table needs a width divisible by 4, got \(decoderDim)")
        if method == .ummae {
            check(maskRatio == Method.ummae.fixedMaskRatio, "mask_ratio", "UM-MAE keeps one unit per 2×2 group, so the ratio is 0.75, got \(maskRatio)")
            check(grouping == nil && groupSizeMax == nil, "grouping", "applies to greenmim only")
            // The decoder's ×2 pixel shuffle turns the last stage into one token per 2×2 group.
            check(encoderStride == 2 * maskUnit, "mask_unit",
                  "UM-MAE needs mask_unit = encoder stride / 2 = \(encoderStride / 2) px (patch × 2^(stages−1) / 2), got \(maskUnit)")
            check(imageSize % (2 * encoderStride) == 0, "image_size",
                  "UM-MAE's compacted map halves \(depths.count) times: image_size must be a multiple of \(2 * encoderStride)")
            if e.isEmpty {
                for (s, g) in stageGrids.enumerated() where g / 2 > windowSize {
                    check((g / 2) % windowSize == 0, "window_size",
                          "\(windowSize) does not divide stage \(s + 1)'s compacted grid \(g / 2)")
                }
            }
        } else {
            check(secondaryMaskRatio == nil && posMLPDim == nil, "secondary_mask_ratio", "applies to ummae only")
            check(maskUnit == encoderStride, "mask_unit",
                  "GreenMIM masks units of the encoder's largest patch, \(encoderStride) px, got \(maskUnit)")
            let units = unitGrid * unitGrid
            if maskRatio > 0 && maskRatio < 1 {
                check(Int(Float(units) * (1 - maskRatio)) >= 1, "mask_ratio", "keeps no unit of \(units)")
            }
        }
        return e
    }
}
