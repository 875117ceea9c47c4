import Dispatch
import Foundation
import GRDB
import PostgresNIO
import Synchronization
import Testing
@testable import Store
import TestSupport

/// The engines every store test runs against. PostgreSQL needs a server: `make test` starts a
/// throwaway one (Tests/Postgres/with-cluster.sh) and names it in `MIMSERVE_TEST_POSTGRES`;
/// without it only SQLite runs, and `postgresVariantsRan` is reported as skipped with the reason.
enum Backend: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case sqlite, postgres

    static let postgresURL = ProcessInfo.processInfo.environment["MIMSERVE_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }
    static let underTest: [Backend] = postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]

    var testDescription: String { rawValue }
    var dialect: MigrationSet.Dialect { self == .sqlite ? .sqlite : .postgres }

    /// A database no other test uses: a new file, or a new schema in the test server's database
    /// (so tests stay independent and may run in parallel).
    func freshLocation() -> DatabaseLocation {
        let tag = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        switch self {
        case .sqlite:
            let dir = Scratch.url("mimserve-store")
            return .sqlite(path: dir.appendingPathComponent("mimserve.sqlite").path)
        case .postgres:
            let base = Self.postgresURL!
            return try! DatabaseLocation(parsing: base + (base.contains("?") ? "&" : "?") + "schema=t_\(tag)")
        }
    }
}

/// A fresh store on `backend`.
func makeStore(_ backend: Backend, migrations: MigrationSet? = nil) throws -> Store {
    try Store(backend.freshLocation(), migrations: migrations ?? MigrationSet.locate(dialect: backend.dialect))
}

@Suite("Store: backends") struct BackendTests {
    @Test(.enabled(if: Backend.postgresURL != nil,
                   "MIMSERVE_TEST_POSTGRES is unset: the PostgreSQL variants did not run (make test starts a server for them)"))
    func postgresVariantsRan() throws {
        #expect(Backend.underTest.contains(.postgres))
        #expect(try makeStore(.postgres).integrityCheck() == "ok")
    }
}

extension Store {
    /// Whether the store's database has a table of that name (in its schema, for PostgreSQL).
    func tableExists(_ name: String) throws -> Bool {
        switch backend {
        case let sqlite as SQLiteStore:
            return try sqlite.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM sqlite_master WHERE name = ?", arguments: [name]) } != 0
        case let pg as PostgresStore:
            return try pg.read { conn in try await conn.rows("SELECT to_regclass(\(name)) IS NOT NULL")[0].decode(Bool.self) }
        default:
            fatalError("unknown backend")
        }
    }
}

/// A write transaction held open (a job's step changed, not committed) until `commit()`.
final class OpenWrite: Sendable {
    private let released = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)

    init(_ store: Store, settingStepOf id: String, to step: Int) {
        let inside = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { [self] in
            switch store.backend {
            case let sqlite as SQLiteStore:
                try? sqlite.write { db in
                    try db.execute(sql: "UPDATE jobs SET step = ? WHERE id = ?", arguments: [step, id])
                    inside.signal()
                    while !self.released.withLock({ $0 }) { usleep(2_000) }
                }
            case let pg as PostgresStore:
                // Waits by sleeping, never by blocking: the store's event loops run other work.
                try? pg.transaction { conn in
                    try await conn.rows("UPDATE jobs SET step = \(step) WHERE id = \(id)")
                    inside.signal()
                    while !self.released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(2)) }
                }
            default:
                fatalError("unknown backend")
            }
            self.finished.signal()
        }
        inside.wait()
    }

    func commit() {
        released.withLock { $0 = true }
        finished.wait()
    }
}
