using Storage.Devices;

namespace Storage.Versioning.Tests;

/// <summary>
/// Random histories of writes, trims, snapshots, clones, rollbacks, resizes, deletes, commits and reopens against a
/// brute-force reference: every volume and snapshot reads as the reference after every step, and the space in use
/// is exactly what the map, the checkpoint and pending frees hold (recomputed from scratch: no leak, no double use).
/// </summary>
public class PoolModelTests
{
    [FsCheck.Xunit.Property(MaxTest = 100, EndSize = 150)]
    public void Random_histories_match_the_reference(int[] script) => Run(script, 4096).GetAwaiter().GetResult();

    [FsCheck.Xunit.Property(MaxTest = 25, EndSize = 100)]
    public void Random_histories_match_the_reference_with_32K_blocks(int[] script) => Run(script, 32768).GetAwaiter().GetResult();

    [Fact]
    public async Task A_pool_that_fills_up_keeps_every_volume_consistent()
    {
        // 8 MiB of data space and volumes that together want far more: writes fail with ENOSPC, nothing breaks.
        var script = Enumerable.Range(0, 400).Select(i => i % 7 == 0 ? 9 + 14 * i : i % 23 == 0 ? 5 + 14 * i : 14 * i).ToArray();
        await Run(script, 4096, deviceBytes: 12L << 20);
    }

    private static async Task Run(int[] script, int blockSize, long deviceBytes = 24L << 20)
    {
        var disk = new MemoryBlockDevice(deviceBytes, 512, "disk");
        var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "model", BlockSize = blockSize }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
        var model = new PoolModel(pool);
        try
        {
            for (int index = 0; index < script.Length; index++)
            {
                int code = script[index];
                await model.StepAsync(code, index);
                if (await model.CheckAsync() is { } error)
                    Assert.Fail($"{error}\nafter:\n{string.Join("\n", model.Log)}");
            }
        }
        finally
        {
            await model.Pool.DisposeAsync();
        }
        var reopened = await Pool.OpenAsync(disk, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
        model.Pool = reopened;
        try
        {
            if (await model.CheckAsync() is { } error)
                Assert.Fail($"after reopening: {error}\nafter:\n{string.Join("\n", model.Log)}");
        }
        finally
        {
            await reopened.DisposeAsync();
        }
    }
}
