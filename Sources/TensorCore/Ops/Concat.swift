/// Concatenation and splitting along an axis.
extension Tensor {
    /// Joins tensors that agree on every dimension but `axis`.
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        Profiler.measure(.memory, .forward) {
            precondition(!parts.isEmpty, "concat of nothing")
            let first = parts[0]
            let ax = axis < 0 ? axis + first.rank : axis
            for p in parts {
                precondition(p.rank == first.rank && (0..<p.rank).allSatisfy { $0 == ax || p.shape[$0] == first.shape[$0] },
                             "concat axis \(axis): shapes \(parts.map(\.shape)) disagree off the axis")
            }
            let outer = first.shape[..<ax].reduce(1, *), inner = first.shape[(ax + 1)...].reduce(1, *)
            let widths = parts.map { $0.shape[ax] * inner }
            let total = widths.reduce(0, +)
            var outShape = first.shape
            outShape[ax] = parts.map { $0.shape[ax] }.reduce(0, +)
            let out = Tensor(uninitialized: outShape)
            var offset = 0
            for (p, w) in zip(parts, widths) {
                for o in 0..<outer { (out.pointer + o * total + offset).update(from: p.pointer + o * w, count: w) }
                offset += w
            }
            let vertices = parts.map(\.vertex)  // the backward reads no values of the parts
            return out.recording("concat", .memory, parts) { g in
                var offset = 0
                for (p, w) in zip(vertices, widths) {
                    if p.requiresGrad {
                        p.accumulateGrad { dp, beta in
                            for o in 0..<outer {
                                let src = g.pointer + o * total + offset, dst = dp + o * w
                                if beta == 0 { dst.update(from: src, count: w) } else { for j in 0..<w { dst[j] += src[j] } }
                            }
                        }
                    }
                    offset += w
                }
            }
        }
    }

    /// Cuts along `axis` into pieces of the given sizes (which must sum to the dimension).
    public func split(_ sizes: [Int], axis: Int) -> [Tensor] {
        let ax = axis < 0 ? axis + rank : axis
        precondition(sizes.reduce(0, +) == shape[ax], "split sizes \(sizes) do not sum to dimension \(shape[ax]) of \(shape)")
        var offset = 0
        return sizes.map { size in
            defer { offset += size }
            return slice(axis: ax, start: offset, length: size)
        }
    }

    /// The sub-range `start..<start+length` along `axis` (a copy).
    public func slice(axis: Int, start: Int, length: Int) -> Tensor {
        Profiler.measure(.memory, .forward) {
            let ax = axis < 0 ? axis + rank : axis
            precondition(start >= 0 && length >= 0 && start + length <= shape[ax], "slice \(start)..<\(start + length) outside axis \(ax) of \(shape)")
            let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
            let total = shape[ax] * inner, w = length * inner, off = start * inner
            var outShape = shape
            outShape[ax] = length
            let out = Tensor(uninitialized: outShape)
            for o in 0..<outer { (out.pointer + o * w).update(from: pointer + o * total + off, count: w) }
            let v = vertex
            return out.recording("slice", .memory, [self]) { g in
                v.accumulateGrad { dx, beta in
                    if beta == 0 { dx.update(repeating: 0, count: v.count) }
                    for o in 0..<outer {
                        let src = g.pointer + o * w, dst = dx + o * total + off
                        for j in 0..<w { dst[j] += src[j] }
                    }
                }
            }
        }
    }
}
