import Testing
@testable import Store

@Suite("Store: database locations") struct LocationTests {
    @Test func sqliteLocations() throws {
        #expect(try DatabaseLocation(parsing: "sqlite:./data/x.sqlite") == .sqlite(path: "./data/x.sqlite"))
        #expect(try DatabaseLocation(parsing: "sqlite:///var/lib/m.sqlite") == .sqlite(path: "/var/lib/m.sqlite"))
        #expect(throws: StoreError.self) { try DatabaseLocation(parsing: "sqlite:") }
        #expect(throws: StoreError.self) { try DatabaseLocation(parsing: "mysql://u@h/db") }
    }

    @Test func postgresOverTCP() throws {
        let l = try DatabaseLocation(parsing: "postgres://mim:s3cr%40t:pw@db.example:6543/jobs?sslmode=require&pool=4")
        guard case .postgres(let pg) = l else { Issue.record("not postgres"); return }
        #expect(pg.endpoint == .tcp(host: "db.example", port: 6543))
        #expect(pg.user == "mim" && pg.password == "s3cr@t:pw" && pg.database == "jobs")
        #expect(pg.tls == .require && pg.maxConnections == 4 && pg.schema == nil)
        let defaults = try PostgresLocation(parsing: "postgresql://mim@[::1]/jobs")
        #expect(defaults.endpoint == .tcp(host: "::1", port: 5432) && defaults.password == nil && defaults.tls == .prefer)
    }

    @Test func postgresOverAUnixSocketInASchema() throws {
        let pg = try PostgresLocation(parsing: "postgres://postgres@/mimserve_test?host=%2Ftmp%2Fpg&schema=Run_1")
        #expect(pg.endpoint == .unixSocket(directory: "/tmp/pg", port: 5432))
        #expect(pg.schema == "run_1" && pg.database == "mimserve_test")
        #expect(pg.description == "postgres://postgres@:5432/mimserve_test?host=/tmp/pg&schema=run_1")
    }

    /// A password appears neither in the description (logs) nor in any parse error.
    @Test func thePasswordIsNeverShown() throws {
        let pg = try PostgresLocation(parsing: "postgres://mim:hunter2@localhost/jobs")
        #expect(pg.description == "postgres://mim:***@localhost:5432/jobs")
        for bad in ["postgres://mim:hunter2@localhost:99999/jobs", "postgres://mim:hunter2@localhost/",
                    "postgres://mim:hunter2@localhost/jobs?schema=a;drop", "postgres://mim:hunter2@localhost/jobs?colour=red",
                    "postgres://:hunter2@localhost/jobs"] {
            do {
                _ = try DatabaseLocation(parsing: bad)
                Issue.record("accepted \(bad)")
            } catch {
                #expect(!error.description.contains("hunter2"), "\(error)")
            }
        }
    }

    /// A server that cannot be reached fails at once, naming where, without the password.
    @Test func anUnreachableServerFailsWithoutThePassword() throws {
        let location = try DatabaseLocation(parsing: "postgres://mim:hunter2@127.0.0.1:1/jobs?sslmode=disable")
        do {
            _ = try Store(location, migrations: MigrationSet.locate(dialect: .postgres))
            Issue.record("opened")
        } catch {
            #expect(error.description.contains("127.0.0.1:1") && !error.description.contains("hunter2"), "\(error)")
        }
    }
}
