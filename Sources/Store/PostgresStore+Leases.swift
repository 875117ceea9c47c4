import Foundation
import PostgresNIO

// Leases on PostgreSQL. Expiry is measured with the server's now(), so the nodes' clocks never
// have to agree; a token check takes the job's row lock, so a claim that takes the job back
// and a write under the old lease cannot interleave: whichever commits second sees the other.

extension PostgresStore {
    func claimNext(owner: String, token: String, leaseSeconds: Double) throws(StoreError) -> Claim? {
        try transaction { conn in
            // A row another node is claiming or writing stays locked until it commits: skip it.
            let expired = try await Self.takeBack(conn, reason: "lease expired", """
                SELECT id, stop_request FROM jobs
                WHERE state = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < now())
                ORDER BY seq FOR UPDATE SKIP LOCKED
                """)
            guard let row = try await conn.rows("""
                SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED
                """).first else { return nil }
            let id = try row.decode(String.self)
            let change = try await Self.transition(conn, id, to: .running, from: [.queued], error: nil)
            try await conn.rows("""
                UPDATE jobs SET lease_owner = \(owner), lease_token = \(token),
                    lease_expires_at = now() + make_interval(secs => \(leaseSeconds)::float8)
                WHERE id = \(id)
                """)
            return Claim(change: change, lease: Lease(jobID: id, owner: owner, token: token), expired: expired)
        }
    }

    func renew(_ lease: Lease, leaseSeconds: Double) throws(StoreError) {
        try transaction { conn in
            let renewed = try await conn.rows("""
                UPDATE jobs SET lease_expires_at = now() + make_interval(secs => \(leaseSeconds)::float8)
                WHERE id = \(lease.jobID) AND state = 'running' AND lease_token = \(lease.token)
                RETURNING id
                """)
            if renewed.isEmpty { throw StoreError.leaseLost(jobID: lease.jobID) }
        }
    }

    // MARK: - Inside transactions

    /// Refuses the write around it unless the job runs under `lease` (nil: not a trainer's
    /// write). Holds the job's row lock to the end of the transaction.
    static func fence(_ conn: PostgresConnection, _ lease: Lease?) async throws {
        guard let lease else { return }
        let held = try await conn.rows("""
            SELECT 1 FROM jobs WHERE id = \(lease.jobID) AND state = 'running' AND lease_token = \(lease.token) FOR UPDATE
            """)
        if held.isEmpty { throw StoreError.leaseLost(jobID: lease.jobID) }
    }

    /// Running jobs `select` finds (id, stop_request; rows locked) whose trainer is gone: a stop
    /// a client asked for is honoured; the others go back to the queue with one more
    /// interruption, or fail at the limit.
    static func takeBack(_ conn: PostgresConnection, reason: String, _ select: PostgresQuery) async throws -> Store.Interrupted {
        var found = Store.Interrupted()
        let rows = try await conn.rows(select).map { try $0.decode((String, String?).self) }
        for (id, request) in rows {
            if let request = request.flatMap(StopKind.init) {
                let to = JobState(honouring: request)
                try await transition(conn, id, to: to, from: [.running], error: nil, reason: reason)
                found.stopped.append(StateChange.Summary(id: id, state: to))
                continue
            }
            let count = try await conn.rows("""
                UPDATE jobs SET interruptions = interruptions + 1 WHERE id = \(id) RETURNING interruptions
                """)[0].decode(Int.self)
            if count >= Store.maxInterruptions {
                try await transition(conn, id, to: .failed, from: [.running], error: Store.interruptedTooOften(count), reason: reason)
                found.failed.append(id)
            } else {
                try await transition(conn, id, to: .queued, from: [.running], error: nil, reason: reason)
                found.requeued.append(id)
            }
        }
        return found
    }
}
