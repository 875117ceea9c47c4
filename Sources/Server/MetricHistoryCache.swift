import Foundation
import NIOCore
import Store
import Synchronization

/// Rendered metric histories (`GET /v1/jobs/{id}/metrics`), reused while the job's row says
/// nothing changed. A dashboard redraws the same chart again and again, often from several
/// tabs at once; rendering it once per change, not once per request, keeps those reads cheap
/// while a job trains on the same cores.
///
/// A history changes only with the job row: metric rows are written in the transaction that
/// moves the job's `step` and `updated_at`, and every state change moves `updated_at` too. The
/// row's (state, step, updated_at) is therefore the history's version, and its ETag.
final class MetricHistoryCache: Sendable {
    struct Key: Hashable {
        let jobID: String
        let afterStep: Int
        let maxPoints: Int?
        let format: String
    }

    struct Entry: Sendable {
        let version: String
        let body: ByteBuffer
    }

    /// At most this many histories of at most `maxBodyBytes` each (16 MiB in all by default):
    /// a full history of a long job is rendered per request rather than held.
    let capacity: Int
    let maxBodyBytes: Int
    private let entries = Mutex<[Key: Entry]>([:])

    init(capacity: Int = 64, maxBodyBytes: Int = 256 << 10) {
        self.capacity = capacity
        self.maxBodyBytes = maxBodyBytes
    }

    /// The version of every history of `job` as the row stands now.
    static func version(of job: JobRecord) -> String {
        "\(job.state.rawValue)-\(job.step)-\(Int64((job.updatedAt.timeIntervalSince1970 * 1000).rounded()))"
    }

    /// The cached body for `key` if it was rendered at `version`; otherwise renders, keeps and
    /// returns it. When full, the cache starts over: its entries are cheap to render again.
    func body(_ key: Key, version: String, render: () throws -> ByteBuffer) rethrows -> ByteBuffer {
        if let hit = entries.withLock({ $0[key] }), hit.version == version { return hit.body }
        let body = try render()
        guard body.readableBytes <= maxBodyBytes else { return body }
        entries.withLock { e in
            if e.count >= capacity && e[key] == nil { e.removeAll(keepingCapacity: true) }
            e[key] = Entry(version: version, body: body)
        }
        return body
    }

    /// Drops a deleted job's histories.
    func forget(jobID: String) {
        entries.withLock { e in e = e.filter { $0.key.jobID != jobID } }
    }

    var count: Int { entries.withLock { $0.count } }
}
