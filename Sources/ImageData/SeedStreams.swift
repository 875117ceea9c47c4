import TensorCore

/// Independent random streams derived from one seed: data order per epoch, augmentation per
/// sample, synthetic content per image. Each stream is a pure function of (seed, purpose,
/// index), which is what makes batch k reproducible whatever happened before it.
enum SeedStream: UInt64 {
    case order = 0x6F72_6465_72
    case augmentation = 0x6175_676D
    case synthetic = 0x7379_6E74

    func generator(seed: UInt64, index: Int) -> RandomGenerator {
        RandomGenerator(seed: mix(mix(seed ^ rawValue) ^ UInt64(bitPattern: Int64(index))))
    }

    /// SplitMix64's finaliser: a bijective scramble, so nearby inputs give unrelated outputs.
    private func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
