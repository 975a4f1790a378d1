using Storage.Consensus;
using Storage.Metadata;

namespace Storage.Metadata.Tests;

/// <summary>The timing defaults: an election timeout long enough to ride out a loaded leader's stalls.</summary>
public sealed class OptionsTests
{
    private static MetadataReplicaOptions Options(TimeSpan? tick = null) => tick is { } t
        ? new MetadataReplicaOptions { Id = 1, Directory = "unused", InitialConfig = Configuration.Initial(3), TickInterval = t }
        : new MetadataReplicaOptions { Id = 1, Directory = "unused", InitialConfig = Configuration.Initial(3) };

    private static void AssertValid(MetadataReplicaOptions o) => new ConsensusOptions
    {
        Id = o.Id, InitialConfig = o.InitialConfig, ElectionTicks = o.ElectionTicks, HeartbeatTicks = o.HeartbeatTicks, LeaseTicks = o.LeaseTicks,
    }.Validate();

    [Fact]
    public void The_default_election_timeout_is_one_second_whatever_the_tick()
    {
        foreach (int ms in (int[])[1, 10, 50, 100])
        {
            var o = Options(TimeSpan.FromMilliseconds(ms));
            Assert.Equal(TimeSpan.FromSeconds(1), o.ElectionTicks * o.TickInterval);
            Assert.Equal(o.ElectionTicks / 10, o.HeartbeatTicks);
            Assert.True(o.LeaseTicks > o.HeartbeatTicks, "the lease outlives a heartbeat period");
            AssertValid(o);
        }
        Assert.Equal(100, Options().ElectionTicks);
    }

    [Fact]
    public void Explicit_ticks_and_short_timeouts_stay_valid()
    {
        var o = new MetadataReplicaOptions
        {
            Id = 1, Directory = "unused", InitialConfig = Configuration.Initial(3), ElectionTicks = 10, HeartbeatTicks = 2, LeaseTicks = 7,
        };
        Assert.Equal((10, 2, 7), (o.ElectionTicks, o.HeartbeatTicks, o.LeaseTicks));
        AssertValid(o);
        foreach (int ms in (int[])[20, 30, 100, 250])
            AssertValid(new MetadataReplicaOptions
            {
                Id = 1, Directory = "unused", InitialConfig = Configuration.Initial(3), ElectionTimeout = TimeSpan.FromMilliseconds(ms),
            });
    }

    [Fact]
    public void An_election_timeout_under_two_ticks_is_a_usage_error()
    {
        var err = new StringWriter();
        Assert.Equal(2, Storage.Cli.Cli.Run(["meta", "serve", "--id", "1", "--dir", "x", "--peers", "1=127.0.0.1:1", "--tick-ms", "100", "--election-ms", "150"], err, err));
        Assert.Contains("--election-ms", err.ToString(), StringComparison.Ordinal);
    }
}
