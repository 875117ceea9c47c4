import Config
import TensorCore

extension Precision {
    /// The precisions this machine trains in: bf16 only on CPUs with its dot-product units.
    public static let supported: [Precision] = BF16.supported ? [.fp32, .bf16] : [.fp32]
}
