import Foundation
import GRDB

// Leases on SQLite. One file has one writer at a time, so checking a token and writing in the
// same `write` transaction is already atomic; times are this machine's clock, the only one.

extension SQLiteStore {
    func claimNext(owner: String, token: String, leaseSeconds: Double) throws(StoreError) -> Claim? {
        try write { db in
            let now = Date()
            let expired = try Self.takeBack(db, reason: "lease expired", where: """
                state = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < ?)
                """, arguments: [now])
            guard let next = try JobRecord.filter(JobRecord.CodingKeys.state == JobState.queued.rawValue)
                .order(JobRecord.CodingKeys.seq).fetchOne(db) else { return nil }
            let change = try Self.transition(db, next.id, to: .running, from: [.queued], error: nil)
            try db.execute(sql: "UPDATE jobs SET lease_owner = ?, lease_token = ?, lease_expires_at = ? WHERE id = ?",
                           arguments: [owner, token, now.addingTimeInterval(leaseSeconds), next.id])
            return Claim(change: change, lease: Lease(jobID: next.id, owner: owner, token: token), expired: expired)
        }
    }

    func renew(_ lease: Lease, leaseSeconds: Double) throws(StoreError) {
        try write { db in
            try db.execute(sql: """
                UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND state = 'running' AND lease_token = ?
                """, arguments: [Date().addingTimeInterval(leaseSeconds), lease.jobID, lease.token])
            if db.changesCount == 0 { throw StoreError.leaseLost(jobID: lease.jobID) }
        }
    }

    // MARK: - Inside transactions

    /// Refuses the write around it unless the job runs under `lease` (nil: not a trainer's write).
    static func fence(_ db: Database, _ lease: Lease?) throws {
        guard let lease else { return }
        let held = try Bool.fetchOne(db, sql: "SELECT 1 FROM jobs WHERE id = ? AND state = 'running' AND lease_token = ?",
                                     arguments: [lease.jobID, lease.token]) ?? false
        if !held { throw StoreError.leaseLost(jobID: lease.jobID) }
    }

    /// Running jobs matching `condition` whose trainer is gone: a stop a client asked for is
    /// honoured; the others go back to the queue with one more interruption, or fail at the limit.
    static func takeBack(_ db: Database, reason: String, where condition: String,
                         arguments: StatementArguments) throws -> Store.Interrupted {
        var found = Store.Interrupted()
        let rows = try Row.fetchAll(db, sql: "SELECT id, stop_request FROM jobs WHERE \(condition) ORDER BY seq",
                                    arguments: arguments)
        for row in rows {
            let id: String = row["id"]
            if let request = (row["stop_request"] as String?).flatMap(StopKind.init) {
                let to = JobState(honouring: request)
                try transition(db, id, to: to, from: [.running], error: nil, reason: reason)
                found.stopped.append(StateChange.Summary(id: id, state: to))
                continue
            }
            try db.execute(sql: "UPDATE jobs SET interruptions = interruptions + 1 WHERE id = ?", arguments: [id])
            let count = try Int.fetchOne(db, sql: "SELECT interruptions FROM jobs WHERE id = ?", arguments: [id]) ?? 0
            if count >= Store.maxInterruptions {
                try transition(db, id, to: .failed, from: [.running], error: Store.interruptedTooOften(count), reason: reason)
                found.failed.append(id)
            } else {
                try transition(db, id, to: .queued, from: [.running], error: nil, reason: reason)
                found.requeued.append(id)
            }
        }
        return found
    }
}
