import TensorCore

/// A layer or model: parameters and child modules under stable dotted names equal to the
/// reference state dicts (`blocks.3.attn.qkv.weight`), so checkpoints move by name.
///
/// Subclasses register what they own in their initialiser with `parameter`, `buffer` and
/// `child`. Buffers are persistent non-trained tensors (fixed sin-cos tables).
open class Module: @unchecked Sendable {
    public private(set) var ownParameters: [(name: String, tensor: Tensor)] = []
    public private(set) var ownBuffers: [(name: String, tensor: Tensor)] = []
    public private(set) var children: [(name: String, module: Module)] = []

    public init() {}

    /// Registers a trainable tensor (it gets `requiresGrad`).
    @discardableResult
    public func parameter(_ name: String, _ tensor: Tensor) -> Tensor {
        precondition(!name.contains("."), "parameter name '\(name)' must not contain a dot")
        tensor.requiresGrad = true
        ownParameters.append((name, tensor))
        return tensor
    }

    @discardableResult
    public func buffer(_ name: String, _ tensor: Tensor) -> Tensor {
        ownBuffers.append((name, tensor))
        return tensor
    }

    @discardableResult
    public func child<M: Module>(_ name: String, _ module: M) -> M {
        children.append((name, module))
        return module
    }

    /// Every trainable parameter with its full dotted name, in registration order.
    public func namedParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out = ownParameters.map { (prefix + $0.name, $0.tensor) }
        for (name, m) in children { out += m.namedParameters(prefix: prefix + name + ".") }
        return out
    }

    public func namedBuffers(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out = ownBuffers.map { (prefix + $0.name, $0.tensor) }
        for (name, m) in children { out += m.namedBuffers(prefix: prefix + name + ".") }
        return out
    }

    public var parameters: [Tensor] { namedParameters().map(\.tensor) }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Parameters and buffers by name (the tensors themselves, not copies).
    public func stateDict() -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (n, t) in namedParameters() + namedBuffers() { d[n] = t }
        return d
    }

    /// Copies values into the module's tensors by name. With `strict`, a missing or extra name
    /// is an error; a shape mismatch always is. Buffers may be absent from `state`.
    public func loadState(_ state: [String: Tensor], strict: Bool = true) throws(StateError) {
        let params = namedParameters(), buffers = namedBuffers()
        var expected = Set<String>()
        for (name, t) in params + buffers {
            expected.insert(name)
            guard let src = state[name] else {
                if strict && params.contains(where: { $0.name == name }) { throw .missing(name) }
                continue
            }
            guard src.shape == t.shape else { throw .shapeMismatch(name, expected: t.shape, found: src.shape) }
            t.load(from: src)
        }
        if strict, let extra = state.keys.sorted().first(where: { !expected.contains($0) }) {
            throw .unexpected(extra)
        }
    }

    public func zeroGrad() {
        for p in parameters { p.grad = nil }
    }
}

/// Why a state dict did not load; each case names the tensor.
public enum StateError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case unexpected(String)
    case shapeMismatch(String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .missing(let n): "missing tensor '\(n)'"
        case .unexpected(let n): "unexpected tensor '\(n)'"
        case let .shapeMismatch(n, e, f): "tensor '\(n)' has shape \(f), expected \(e)"
        }
    }
}
