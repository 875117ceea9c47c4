import Foundation
import GRDB

/// The SQL files of `Migrations/`, in order. Each `NNNN_what.sql` runs once, inside a
/// transaction, and is recorded by name (GRDB's `grdb_migrations` table), so a database is
/// always at a known version and a file is never applied twice.
public struct MigrationSet: Sendable {
    public struct File: Sendable, Equatable {
        public let name: String
        public let sql: String
    }

    public let directory: URL
    public let files: [File]

    /// Reads every `NNNN_*.sql` in `directory`; numbering must start at 1 with no gaps or repeats.
    public init(directory: URL) throws(StoreError) {
        self.directory = directory
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
        } catch {
            throw .migrations("cannot list \(directory.path): \(error.localizedDescription)")
        }
        guard !names.isEmpty else { throw .migrations("no .sql files in \(directory.path)") }
        var files: [File] = []
        for (i, name) in names.enumerated() {
            let number = name.prefix { $0.isNumber }
            guard number.count == 4, name.dropFirst(4).first == "_", Int(number) == i + 1 else {
                throw .migrations("\(name): migrations must be named NNNN_what.sql and numbered 0001, 0002, … without gaps")
            }
            guard let sql = try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8) else {
                throw .migrations("cannot read \(name) as UTF-8")
            }
            files.append(File(name: String(name.dropLast(4)), sql: sql))
        }
        self.files = files
    }

    /// Finds `Migrations/` whatever the working directory: an explicit path (flag or
    /// `MIMSERVE_MIGRATIONS`) wins; then beside the executable or in `../share/mimserve`
    /// (installed and container layouts); then the source tree this file was built from
    /// (`swift run`, `swift test`); then the working directory.
    public static func locate(explicit: String? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              sourceFile: String = #filePath) throws(StoreError) -> MigrationSet {
        if let path = explicit ?? environment["MIMSERVE_MIGRATIONS"], !path.isEmpty {
            return try MigrationSet(directory: URL(fileURLWithPath: path))
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        let sourceRoot = URL(fileURLWithPath: sourceFile).deletingLastPathComponent()  // Sources/Store
            .deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [
            executable.appendingPathComponent("Migrations"),
            executable.appendingPathComponent("../share/mimserve/Migrations").standardized,
            sourceRoot.appendingPathComponent("Migrations"),
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Migrations"),
        ]
        for dir in candidates where FileManager.default.fileExists(atPath: dir.appendingPathComponent("0001_initial.sql").path) {
            return try MigrationSet(directory: dir)
        }
        throw .migrations("Migrations/ not found (looked in \(candidates.map(\.path).joined(separator: ", "))); set MIMSERVE_MIGRATIONS")
    }

    var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        for file in files {
            m.registerMigration(file.name) { db in try db.execute(sql: file.sql) }
        }
        return m
    }
}
