namespace Storage.Consensus.Tests;

public class ScenarioTests
{
    public static TheoryData<string> Scripts()
    {
        var data = new TheoryData<string>();
        foreach (string file in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "testdata"), "*.txt").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(Scripts))]
    public void Scenario(string script) => new ScenarioRunner().Run(Path.Combine(AppContext.BaseDirectory, "testdata", script));

    [Fact]
    public void Every_classic_scenario_has_a_script()
    {
        var scripts = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "testdata"), "*.txt").Select(f => Path.GetFileName(f)).ToList();
        foreach (string name in (string[])["dueling_proposers.txt", "leader_crash_after_accept_before_commit.txt", "partitioned_old_leader.txt", "replica_with_a_wiped_disk.txt"])
            Assert.Contains(name, scripts);
    }

    [Fact]
    public void A_failed_expectation_names_the_line()
    {
        string path = Path.Combine(Path.GetTempPath(), $"scenario-{Guid.NewGuid():N}.txt");
        File.WriteAllLines(path, ["cluster 3", "expect-leader 1"]);
        try
        {
            var e = Assert.Throws<ScenarioFailure>(() => new ScenarioRunner().Run(path));
            Assert.Contains(":2: expect-leader 1", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
