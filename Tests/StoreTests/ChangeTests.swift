import Foundation
import GRDB
import PostgresNIO
import Synchronization
import Testing
@testable import Store
import TestSupport

extension Store {
    /// Runs `sql` behind the store's back (a row in an older schema, a connection to end).
    func execute(_ sql: String) throws {
        switch backend {
        case let sqlite as SQLiteStore:
            try sqlite.write { db in try db.execute(sql: sql) }
        case let pg as PostgresStore:
            _ = try pg.read { conn in try await conn.rows(PostgresQuery(unsafeSQL: sql)) }
        default:
            fatalError("unknown backend")
        }
    }
}

@Suite("Store: checkpoint rows and change notifications") struct ChangeTests {
    /// The shipped migrations before `first` (a name prefix), in a folder of their own.
    func migrations(_ backend: Backend, before first: String) throws -> MigrationSet {
        let all = try MigrationSet.locate(dialect: backend.dialect, environment: [:])
        let dir = Scratch.url("mig")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for file in all.files where file.name < first {
            try FileManager.default.copyItem(at: all.directory.appendingPathComponent(file.name + ".sql"),
                                             to: dir.appendingPathComponent(file.name + ".sql"))
        }
        return try MigrationSet(directory: dir)
    }

    /// A database written before `--checkpoint-dir` recorded paths under the data dir; upgraded,
    /// they name the same files relative to the checkpoint directory (`<data-dir>/checkpoints`).
    @Test(arguments: Backend.underTest) func upgradingKeepsCheckpointsFindable(_ backend: Backend) throws {
        let location = backend.freshLocation()
        let old = try Store(location, migrations: migrations(backend, before: "0005"))
        let id = try old.submit(newJob()).job.id
        try old.execute("""
            INSERT INTO checkpoints (job_id, step, path, bytes, sha256, is_final, created_at)
            VALUES ('\(id)', 10, 'checkpoints/\(id)/step-00000010.safetensors', 5, 'x', FALSE, CURRENT_TIMESTAMP)
            """)
        let upgraded = try Store(location, migrations: MigrationSet.locate(dialect: backend.dialect, environment: [:]))
        let row = try #require(try upgraded.checkpoint(jobID: id, step: 10))
        #expect(row.path == "\(id)/step-00000010.safetensors")
        #expect(row.leaseOwner == nil && row.leaseToken == nil)
    }

    @Test(arguments: Backend.underTest) func aCheckpointRowNamesTheLeaseThatWroteIt(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        let lease = try #require(try store.claimNext(owner: "w1")).lease
        try store.addCheckpoint(CheckpointRecord(jobID: id, step: 5, path: "\(id)/5", bytes: 1, sha256: "x", isFinal: false), lease: lease)
        let row = try #require(try store.checkpoint(jobID: id, step: 5))
        #expect(row.leaseOwner == "w1" && row.leaseToken == lease.token)
        let other = try store.submit(newJob(1)).job.id
        try store.addCheckpoint(CheckpointRecord(jobID: other, step: 5, path: "\(other)/5", bytes: 1, sha256: "x", isFinal: false))
        #expect(try store.checkpoint(jobID: other, step: 5)?.leaseToken == nil)
    }

    @Test func sqliteHasNoOtherWriters() throws {
        #expect(try makeStore(.sqlite).watchChanges { _ in } == nil)
    }

    /// What one store's watch reports, in order, with a way to wait for the next report.
    final class Reports: Sendable {
        private let seen = Mutex<[StoreChange]>([])
        private let arrived = DispatchSemaphore(value: 0)

        func add(_ c: StoreChange) {
            seen.withLock { $0.append(c) }
            arrived.signal()
        }

        /// Waits for reports until one satisfies `done` (a generous deadline: only a broken
        /// notification path ever reaches it).
        func wait(until done: ([StoreChange]) -> Bool) -> [StoreChange] {
            let deadline = DispatchTime.now() + 30
            while !done(all), arrived.wait(timeout: deadline) == .success {}
            return all
        }

        var all: [StoreChange] { seen.withLock { $0 } }
    }

    /// Two stores on one database, standing for two nodes; the first watches, listening already.
    func twoNodes() throws -> (Store, Store, Reports, StoreWatch) {
        let location = Backend.postgres.freshLocation()
        let migrations = try MigrationSet.locate(dialect: .postgres, environment: [:])
        let a = try Store(location, migrations: migrations)
        let b = try Store(location, migrations: migrations)
        let reports = Reports()
        let watch = try #require(a.watchChanges { reports.add($0) })
        #expect(watch.waitUntilListening(seconds: 30))
        return (a, b, reports, watch)
    }

    /// Two stores on one database stand for two nodes: each write of B reaches A's watch, and
    /// A's own writes do not come back to it.
    @Test(.enabled(if: Backend.postgresURL != nil, "MIMSERVE_TEST_POSTGRES is unset"))
    func anotherNodesWritesAreReportedAndOwnOnesAreNot() throws {
        let (a, b, reports, watch) = try twoNodes()
        defer { watch.cancel() }

        let own = try a.submit(newJob(0)).job.id  // not reported
        let id = try b.submit(newJob(1)).job.id  // a state event
        #expect(reports.wait { $0.contains(.job(id)) } == [.job(id)])
        try b.record(progress: JobProgress(step: 1, loss: 1, lr: 0.1, imagesPerS: nil, etaS: nil),
                     metrics: [MetricRecord(jobID: id, step: 1, loss: 1, lr: 0.1, imagesPerS: nil, wallTimeS: 1)], for: id)
        #expect(reports.wait { $0.count == 2 } == [.job(id), .job(id)])
        _ = try a.transition(own, to: .cancelled, from: [.queued])
        _ = try b.transition(id, to: .cancelled, from: [.queued])
        _ = try b.delete(id)
        let all = reports.wait { $0.count == 4 }
        #expect(all == Array(repeating: .job(id), count: 4), "\(all)")
    }

    /// When the listening connection is lost, notifications sent meanwhile are lost with it:
    /// the watch reconnects and says so with `.unknown`, and then reports changes again.
    @Test(.enabled(if: Backend.postgresURL != nil, "MIMSERVE_TEST_POSTGRES is unset"))
    func aLostListenerReconnectsAndSaysChangesMayHaveBeenMissed() throws {
        let (a, b, reports, watch) = try twoNodes()
        defer { watch.cancel() }
        let name = (a.backend as! PostgresStore).applicationName + "-listen"
        try b.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '\(name)'")
        #expect(reports.wait { $0.contains(.unknown) } == [.unknown])
        let id = try b.submit(newJob(2)).job.id
        #expect(reports.wait { $0.contains(.job(id)) } == [.unknown, .job(id)])
    }
}
