import TensorCore

/// A batch's mask, decided outside the model so tests and fixtures can supply it.
public enum MaskSpec: Sendable {
    /// Per-sample noise-sort masking (B7, docs/methods/common.md#b7-noise-sort-masking):
    /// noise (B, L); the `keep` lowest stay visible.
    case noise(Tensor, keep: Int)
    /// Unit mask (B, Uh, Uw), 1 = masked, at mask-unit resolution.
    case units(Tensor)
    /// UM-MAE: primary unit mask (B, U, U), exactly one 0 per 2×2 group; secondary (B, U, U),
    /// 1 at the kept units the encoder sees as the mask token.
    case uniform(primary: Tensor, secondary: Tensor)
}

extension MaskSpec {
    /// The masks of consecutive samples as one batch's mask, or nil when they are not of one
    /// kind (or keep different numbers of tokens) and so cannot share a forward pass.
    public static func concatenating(_ masks: [MaskSpec]) -> MaskSpec? {
        guard let first = masks.first else { return nil }
        guard masks.count > 1 else { return first }
        switch first {
        case let .noise(_, keep):
            let rows = masks.compactMap { m -> Tensor? in if case let .noise(t, k) = m, k == keep { t } else { nil } }
            return rows.count == masks.count ? .noise(Tensor.concat(rows, axis: 0), keep: keep) : nil
        case .units:
            let rows = masks.compactMap { m -> Tensor? in if case let .units(t) = m { t } else { nil } }
            return rows.count == masks.count ? .units(Tensor.concat(rows, axis: 0)) : nil
        case .uniform:
            let pairs = masks.compactMap { m -> (Tensor, Tensor)? in if case let .uniform(p, s) = m { (p, s) } else { nil } }
            guard pairs.count == masks.count else { return nil }
            return .uniform(primary: Tensor.concat(pairs.map(\.0), axis: 0), secondary: Tensor.concat(pairs.map(\.1), axis: 0))
        }
    }

    /// The same kind, shape and values as `other`.
    public func isSame(as other: MaskSpec) -> Bool {
        switch (self, other) {
        case let (.noise(a, k), .noise(b, l)): k == l && a.shape == b.shape && a.scalars == b.scalars
        case let (.units(a), .units(b)): a.shape == b.shape && a.scalars == b.scalars
        case let (.uniform(a, s), .uniform(b, t)): a.shape == b.shape && a.scalars == b.scalars && s.shape == t.shape && s.scalars == t.scalars
        default: false
        }
    }
}

/// Mask sampling for each method, from the job's seeded generator.
public enum Masking {
    /// Noise for B7 with `keep = ⌊L·(1 − r)⌋`.
    public static func noise(batch: Int, tokens: Int, ratio: Float, rng: inout RandomGenerator) -> MaskSpec {
        let t = Tensor(uninitialized: [batch, tokens])
        for i in 0..<t.count { t.pointer[i] = rng.uniform() }
        return .noise(t, keep: Int(Float(tokens) * (1 - ratio)))
    }

    /// SimMIM: per sample, mask the first ⌈units·r⌉ entries of a random permutation.
    public static func randomUnits(batch: Int, unitGrid: Int, ratio: Float, rng: inout RandomGenerator) -> MaskSpec {
        let n = unitGrid * unitGrid
        let count = Int((Float(n) * ratio).rounded(.up))
        let t = Tensor(zeros: [batch, unitGrid, unitGrid])
        for b in 0..<batch {
            for u in rng.permutation(n).prefix(count) { t.pointer[b * n + u] = 1 }
        }
        return .units(t)
    }

    /// argsort per row, ascending; ties by index (stable) so results never depend on sort internals.
    public static func argsortRows(_ noise: Tensor) -> [[Int]] {
        let (B, L) = (noise.shape[0], noise.shape[1])
        return (0..<B).map { b in
            let row = noise.pointer + b * L
            return (0..<L).sorted { row[$0] != row[$1] ? row[$0] < row[$1] : $0 < $1 }
        }
    }

    /// Nearest upsampling of a (B, U, U) unit mask to (B, U·f, U·f).
    public static func upsample(_ units: Tensor, factor f: Int) -> Tensor {
        let (B, U) = (units.shape[0], units.shape[1])
        let G = U * f
        let out = Tensor(uninitialized: [B, G, G])
        for b in 0..<B { for y in 0..<G { for x in 0..<G {
            out.pointer[(b * G + y) * G + x] = units.pointer[(b * U + y / f) * U + x / f]
        } } }
        return out
    }
}

/// B7's per-sample shuffle and B8's way back (docs/methods/common.md#b7-noise-sort-masking), for
/// the methods that mask by noise per sample (MAE, ConvMAE): which tokens the encoder sees, in
/// noise order, and where each decoder row goes.
///
/// Legend: B batch, L tokens per sample, c = 1 with a class row in front of the latents, else 0.
struct NoiseShuffle {
    let keep: Int
    /// (B·keep) rows of the (B·L) tokens, in noise order.
    let visible: RowIndex
    /// (B·(c + L)) rows of [decoder latents (B·(c + keep)); mask token], raster order.
    let unshuffle: RowIndex
    /// (B, L), 1 = masked.
    let mask: Tensor

    init(noise: Tensor, keep: Int, classToken: Bool) {
        precondition(noise.rank == 2, "noise must be (B, L), got \(noise.shape)")
        let (B, L) = (noise.shape[0], noise.shape[1])
        precondition(keep >= 1 && keep <= L, "keeps \(keep) of \(L) tokens")
        let c = classToken ? 1 : 0, perSample = c + keep
        var visible: [Int32] = [], unshuffle: [Int32] = []
        let mask = Tensor(repeating: 1, shape: [B, L])
        let maskRow = Int32(B * perSample)
        for (b, order) in Masking.argsortRows(noise).enumerated() {
            var restore = [Int](repeating: 0, count: L)
            for (rank, l) in order.enumerated() { restore[l] = rank }
            for l in order.prefix(keep) {
                visible.append(Int32(b * L + l))
                mask.pointer[b * L + l] = 0
            }
            if classToken { unshuffle.append(Int32(b * perSample)) }  // the class latent stays in front
            for l in 0..<L {
                unshuffle.append(restore[l] < keep ? Int32(b * perSample + c + restore[l]) : maskRow)
            }
        }
        self.keep = keep
        self.visible = RowIndex(visible, sourceRows: B * L)
        self.unshuffle = RowIndex(unshuffle, sourceRows: B * perSample + 1)
        self.mask = mask
    }
}

/// MAE and ConvMAE: per-sample noise masking (B7), an encoder that sees only the visible tokens
/// in noise order, and B8 to put the decoder's rows back. Each brings its own encoder.
protocol NoiseMaskedPredictor: UnitPredictor {
    /// Visible latents (B, c + keep, D), c = 1 with the decoder's class row, after the final LN.
    func encode(_ images: Tensor, shuffle: NoiseShuffle) -> Tensor
}

extension NoiseMaskedPredictor {
    /// `MIMModel.sampleMask`: noise per sample over the U² units.
    func noiseMask(batch: Int, ratio: Float?, rng: inout RandomGenerator) -> MaskSpec {
        Masking.noise(batch: batch, tokens: unitCount, ratio: ratio ?? config.maskRatio, rng: &rng)
    }

    func shuffle(noise: Tensor, keep: Int) -> NoiseShuffle {
        precondition(noise.shape == [noise.shape[0], unitCount], "\(config.method) noise must be (B, \(unitCount)), got \(noise.shape)")
        return NoiseShuffle(noise: noise, keep: keep, classToken: decoder.classToken)
    }

    /// Latents (B, c + keep, D) → (B, U², q²·3).
    func decode(_ latent: Tensor, shuffle s: NoiseShuffle) -> Tensor {
        decoder(rows: decoder.embedRows(latent), placement: s.unshuffle)
    }

    /// `MIMModel.forward` for a `.noise` mask: loss on the masked units.
    func noiseMaskedForward(_ images: Tensor, mask spec: MaskSpec) -> MIMOutput {
        guard case let .noise(noise, keep) = spec else { preconditionFailure("\(config.method) masks by noise (B7)") }
        let s = shuffle(noise: noise, keep: keep)
        let latent = encode(images, shuffle: s)
        let pred = decode(latent, shuffle: s)
        return MIMOutput(loss: unitLoss(pred, images: images, mask: s.mask), prediction: pred, latent: latent, mask: s.mask)
    }

    /// `MIMModel.trainingLoss` for a `.noise` mask: the loss of `noiseMaskedForward`, predicting
    /// the masked units alone (`MAEDecoder.callAsFunction(rows:placement:predicting:)`).
    func noiseMaskedTrainingLoss(_ images: Tensor, mask spec: MaskSpec) -> Tensor {
        guard case let .noise(noise, keep) = spec else { preconditionFailure("\(config.method) masks by noise (B7)") }
        let s = shuffle(noise: noise, keep: keep)
        let latent = encode(images, shuffle: s)
        let scored = scoredRows(s.mask)
        let pred = decoder(rows: decoder.embedRows(latent), placement: s.unshuffle, predicting: scored.tokens)
        return scoredUnitLoss(pred, images: images, scored: scored.targets)
    }
}
