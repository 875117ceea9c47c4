import Config
import TensorCore

extension Precision {
    /// The precisions this machine trains in: bf16 only on CPUs with its dot-product units.
    public static let supported: [Precision] = BF16.supported ? [.fp32, .bf16] : [.fp32]

    /// The precisions this process can run: `supported`, plus bf16 emulated where the
    /// environment asks for it (`BF16.available`; tests and memory measurements only).
    public static let runnable: [Precision] = BF16.available ? [.fp32, .bf16] : [.fp32]
}
