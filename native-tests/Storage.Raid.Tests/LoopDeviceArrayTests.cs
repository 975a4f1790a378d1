using Storage.Devices;
using Storage.Devices.Tests;

namespace Storage.Raid.Tests;

/// <summary>Arrays over real block devices: loop devices on sparse files, opened O_DIRECT (root and losetup; failed with CI=true).</summary>
public class LoopDeviceArrayTests
{
    [Fact]
    public async Task A_raid6_over_loop_devices_writes_survives_two_failures_and_assembles_again()
    {
        var loops = new List<LoopDevice>();
        try
        {
            for (int i = 0; i < 6; i++)
                loops.Add(LoopDevice.Attach(8 << 20, sectorSize: i == 0 ? 4096 : 512));
            var devices = loops.Select(l => (IBlockDevice)RawBlockDevice.Open(l.Path)).ToList();
            var array = await RaidArray.CreateAsync(devices[..5], new ArrayCreateOptions { Level = RaidLevel.Raid6, ChunkSize = 16384, Name = "loops" }, [devices[5]]);
            Assert.Equal(4096, array.SectorSize);   // the largest member sector size wins
            var data = Bytes.Random((int)array.Capacity, 11);
            await array.WriteAsync(0, data);
            await array.FlushAsync();
            var back = new byte[data.Length];
            await array.ReadAsync(0, back);
            Assert.Equal(data, back);
            await array.FailAsync(1);
            await array.FailAsync(3);
            await array.ReadAsync(0, back);
            Assert.Equal(data, back);
            await array.WaitForRebuildsAsync();
            Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
            await array.StopAsync();

            var reopened = loops.Select(l => (IBlockDevice)RawBlockDevice.Open(l.Path)).ToList();
            var again = await RaidArray.AssembleAsync(reopened);
            Assert.Equal("degraded", again.Status().State);   // two disks failed, one spare took a role: one role is still short
            Assert.Equal(2, again.Assembly!.Warnings.Count);
            Array.Clear(back);
            await again.ReadAsync(0, back);
            Assert.Equal(data, back);
            await again.StopAsync();
            foreach (var left in reopened.Where(d => again.Assembly!.Warnings.Any(w => w.StartsWith(d.Name, StringComparison.Ordinal))))
                left.Dispose();
        }
        finally
        {
            foreach (var loop in loops)
                loop.Dispose();
        }
    }
}
