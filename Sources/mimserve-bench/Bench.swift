import ArgumentParser

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mimserve-bench",
        abstract: "MIMServe benchmarks: JSON lines on stdout, a table on stderr. Build with -c release.",
        subcommands: [CoreBench.self, TrainBench.self, InferBench.self, DataBench.self, CompareBench.self, JobsBench.self, MemoryBench.self,
                      QualityBench.self]
    )
}
