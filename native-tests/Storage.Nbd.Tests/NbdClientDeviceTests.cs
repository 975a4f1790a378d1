using System.Diagnostics;
using Storage.Devices;
using Storage.Devices.Tests;

namespace Storage.Nbd.Tests;

/// <summary>
/// <see cref="NbdClientDevice"/> against our server and against nbdkit: contents match a reference, large transfers
/// are split, multi-conn spreads requests, a server restart under load is ridden out, errors arrive as the device
/// contract says.
/// </summary>
public sealed class NbdClientDeviceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static NbdClientOptions Options(TestServer server, string transport, int connections = 1) => transport == "unix"
        ? new NbdClientOptions { UnixSocket = server.UnixPath, ExportName = "disk", Connections = connections }
        : new NbdClientOptions { Host = "127.0.0.1", Port = server.Tcp.Port, ExportName = "disk", Connections = connections };

    [Theory]
    [InlineData("unix", 512)]
    [InlineData("tcp", 512)]
    [InlineData("unix", 4096)]
    public async Task Reads_and_writes_match_a_reference_through_our_server(string transport, int sectorSize)
    {
        await using var server = new TestServer(capacity: 32 << 20, sectorSize: sectorSize);
        await using var device = await NbdClientDevice.ConnectAsync(Options(server, transport), cancellationToken: Ct);
        Assert.Equal(32 << 20, device.Capacity);
        Assert.Equal(sectorSize, device.SectorSize);
        var reference = server.Memory!.Bytes.ToArray();
        await AssertSameAsync(device, reference);

        var random = new Random(sectorSize);
        for (int i = 0; i < 200; i++)
        {
            int sectors = random.Next(1, i % 10 == 0 ? 4096 : 64);   // some of them several MiB: split into requests
            long offset = (long)random.Next(0, (int)(device.Capacity / sectorSize) - sectors) * sectorSize;
            var data = new byte[sectors * sectorSize];
            random.NextBytes(data);
            await device.WriteAsync(offset, data, forceUnitAccess: i % 7 == 0, cancellationToken: Ct);
            data.CopyTo(reference, offset);
            if (i % 3 == 0)
            {
                long trimAt = (long)random.Next(0, (int)(device.Capacity / sectorSize) - 8) * sectorSize;
                await device.TrimAsync(trimAt, 8 * sectorSize, cancellationToken: Ct);
                Array.Clear(reference, (int)trimAt, 8 * sectorSize);
            }
        }
        await device.FlushAsync(cancellationToken: Ct);
        await AssertSameAsync(device, reference);
        Assert.Equal(reference, server.Memory.Bytes.ToArray());   // what the server holds, not just what the client read
    }

    [Fact]
    public async Task Multi_conn_spreads_concurrent_requests_over_every_connection()
    {
        await using var server = new TestServer(capacity: 16 << 20);
        await using var device = await NbdClientDevice.ConnectAsync(Options(server, "unix", connections: 4), cancellationToken: Ct);
        Assert.Equal(4, device.ConnectionCount);
        await server.WaitForConnectionsAsync(4);
        var reference = server.Memory!.Bytes.ToArray();
        await Task.WhenAll(Enumerable.Range(0, 64).Select(async i =>
        {
            var data = new byte[64 * 1024];
            new Random(i).NextBytes(data);
            await device.WriteAsync(i * 64L * 1024, data, cancellationToken: Ct);
            lock (reference)
                data.CopyTo(reference, i * 64L * 1024);
        }));
        await device.FlushAsync(cancellationToken: Ct);
        await AssertSameAsync(device, reference);
    }

    [Fact]
    public async Task A_server_restart_under_load_is_ridden_out_and_nothing_is_lost()
    {
        using var directory = new TempDirectory();
        string socket = directory.File("restart.sock");
        using var disk = new MemoryBlockDevice(16 << 20, 512, "restart-disk");
        var server = Serve(disk, socket);
        await using var device = await NbdClientDevice.ConnectAsync(new NbdClientOptions
        {
            UnixSocket = socket, ExportName = "disk", ReconnectAttempts = 10, ReconnectDelay = TimeSpan.FromMilliseconds(20),
        }, cancellationToken: Ct);
        var reference = new byte[disk.Capacity];
        var writes = Task.Run(async () =>
        {
            for (int i = 0; i < 400; i++)
            {
                var data = new byte[8192];
                new Random(i).NextBytes(data);
                long offset = i % 2048 * 8192L;
                await device.WriteAsync(offset, data, cancellationToken: Ct);
                data.CopyTo(reference, offset);
            }
        }, Ct);
        await Task.Delay(50, cancellationToken: Ct);
        await server.StopAsync(cancellationToken: Ct);                     // every connection drops; requests in flight lose their answers
        File.Delete(socket);
        await Task.Delay(100, cancellationToken: Ct);
        server = Serve(disk, socket);                 // the same disk behind a new server
        await writes;
        await device.FlushAsync(cancellationToken: Ct);
        Assert.True(device.Reconnects >= 1, "the device reconnected");
        await AssertSameAsync(device, reference);
        await server.StopAsync(cancellationToken: Ct);
    }

    /// <summary>
    /// A server that dies loses what it acknowledged and had not flushed; a flush on the next connection would then
    /// report those writes durable. With <see cref="NbdClientOptions.ReplayUnflushed"/> the device sends them again
    /// first; without it they are gone (the test's control: it shows the crash really loses them).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Writes_a_crashed_server_acknowledged_but_never_flushed_are_sent_again_on_reconnect(bool replay)
    {
        using var directory = new TempDirectory();
        string socket = directory.File("crash.sock");
        using var disk = new FaultInjectingDevice(new MemoryBlockDevice(4 << 20, 512, "crash-disk"), seed: 7);
        var server = Serve(disk, socket);
        await using var device = await NbdClientDevice.ConnectAsync(new NbdClientOptions
        {
            UnixSocket = socket, ExportName = "disk", ReconnectAttempts = 10, ReconnectDelay = TimeSpan.FromMilliseconds(20), ReplayUnflushed = replay,
        }, cancellationToken: Ct);
        var reference = new byte[disk.Capacity];
        var durable = new byte[65536];
        new Random(1).NextBytes(durable);
        await device.WriteAsync(0, durable, cancellationToken: Ct);
        durable.CopyTo(reference, 0);
        await device.FlushAsync(cancellationToken: Ct);
        for (int i = 0; i < 32; i++)
        {
            var data = new byte[4096];
            new Random(100 + i).NextBytes(data);
            await device.WriteAsync(i * 8192L, data, cancellationToken: Ct);   // overwrites part of the durable bytes, too
            data.CopyTo(reference, i * 8192L);
        }
        await device.TrimAsync(1 << 20, 4096, cancellationToken: Ct);

        await server.StopAsync(cancellationToken: Ct);   // the server dies, and with it the writes it had not flushed
        await disk.CrashAsync(CrashMode.DropUnflushed);
        disk.Restart();
        File.Delete(socket);
        server = Serve(disk, socket);
        await device.FlushAsync(cancellationToken: Ct);   // reconnects (replaying, or not), then flushes
        Assert.True(device.Reconnects >= 1, "the device reconnected");
        var actual = new byte[reference.Length];
        await device.ReadAsync(0, actual, cancellationToken: Ct);
        Assert.Equal(replay, reference.AsSpan().SequenceEqual(actual));
        await server.StopAsync(cancellationToken: Ct);
    }

    /// <summary>
    /// A restarted server that refuses one of the writes sent again (its disk now fails there, or is full): that write
    /// is lost, the next flush says so once, and the device goes on working — before, the refused write stayed in the
    /// replay list and every reconnection failed on it again, so the device was dead for as long as the server refused it.
    /// </summary>
    [Fact]
    public async Task A_replayed_write_the_restarted_server_refuses_is_reported_lost_once_and_the_device_goes_on()
    {
        using var directory = new TempDirectory();
        string socket = directory.File("refuse.sock");
        using var disk = new FaultInjectingDevice(new MemoryBlockDevice(4 << 20, 512, "refuse-disk"), seed: 8);
        var server = Serve(disk, socket);
        await using var device = await NbdClientDevice.ConnectAsync(new NbdClientOptions
        {
            UnixSocket = socket, ExportName = "disk", ReconnectAttempts = 3, ReconnectDelay = TimeSpan.FromMilliseconds(20), ReplayUnflushed = true,
        }, cancellationToken: Ct);
        var data = new byte[4096];
        for (int i = 0; i < 4; i++)
        {
            Array.Fill(data, (byte)(0x10 + i));
            await device.WriteAsync(i * 8192L, data, cancellationToken: Ct);
        }
        await server.StopAsync(cancellationToken: Ct);
        await disk.CrashAsync(CrashMode.DropUnflushed);
        disk.Restart();
        disk.FailWrites(8192, 4096);   // the second write cannot be written again, and stays so
        File.Delete(socket);
        server = Serve(disk, socket);

        var lost = await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync(cancellationToken: Ct).AsTask());
        Assert.Contains("1 acknowledged write(s) or trim(s) were lost", lost.Message, StringComparison.Ordinal);
        Assert.Equal(1, device.LostWrites);
        await device.WriteAsync(1 << 20, data, cancellationToken: Ct);
        await device.FlushAsync(cancellationToken: Ct);   // reported once; the device works
        var read = new byte[4096];
        foreach (int i in new[] { 0, 2, 3 })
        {
            await device.ReadAsync(i * 8192L, read, cancellationToken: Ct);
            Assert.All(read, b => Assert.Equal(0x10 + i, b));   // the other replayed writes made it
        }
        await server.StopAsync(cancellationToken: Ct);
    }

    [Fact]
    public async Task Errors_say_what_the_server_refused()
    {
        await using var server = new TestServer(capacity: 1 << 20, readOnly: true);
        var unknown = await Assert.ThrowsAsync<NbdConfigurationException>(() => NbdClientDevice.ConnectAsync(Options(server, "unix") with { ExportName = "nope" }, cancellationToken: Ct));
        Assert.Contains("no export 'nope'", unknown.Message, StringComparison.Ordinal);
        await using var device = await NbdClientDevice.ConnectAsync(Options(server, "unix"), cancellationToken: Ct);
        Assert.True(device.IsReadOnly);
        await Assert.ThrowsAsync<NotSupportedException>(async () => await device.WriteAsync(0, new byte[512], cancellationToken: Ct));

        var nowhere = await Assert.ThrowsAsync<BlockDeviceException>(() => NbdClientDevice.ConnectAsync(new NbdClientOptions { UnixSocket = server.Scratch("missing.sock") }, cancellationToken: Ct));
        Assert.Contains("cannot open the NBD export", nowhere.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failing_disk_behind_the_server_is_an_io_error_and_the_connection_goes_on()
    {
        using var inner = new MemoryBlockDevice(1 << 20, 512, "failing");
        var faulty = new FaultInjectingDevice(inner, seed: 1);
        faulty.FailReads(0, 4096);
        await using var server = new TestServer(faulty);
        await using var device = await NbdClientDevice.ConnectAsync(Options(server, "tcp"), cancellationToken: Ct);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.ReadAsync(0, new byte[4096], cancellationToken: Ct));
        Assert.Contains("EIO", e.Message, StringComparison.Ordinal);
        await device.ReadAsync(8192, new byte[4096], cancellationToken: Ct);   // the same connection answers the next request
        Assert.Equal(0, device.Reconnects);
    }

    [Fact]
    public async Task Works_against_nbdkit()
    {
        string nbdkit = Requires.Tool("nbdkit", "nbdkit");
        using var directory = new TempDirectory();
        string socket = directory.File("nbdkit.sock");
        using var process = Process.Start(new ProcessStartInfo(nbdkit, ["-f", "--exit-with-parent", "-U", socket, "memory", "16M"]) { RedirectStandardError = true })!;
        try
        {
            for (int i = 0; i < 500 && !File.Exists(socket); i++)
                await Task.Delay(10, cancellationToken: Ct);
            await using var device = await NbdClientDevice.ConnectAsync(new NbdClientOptions { UnixSocket = socket, Connections = 2 }, cancellationToken: Ct);
            Assert.Equal(16 << 20, device.Capacity);
            var reference = new byte[device.Capacity];
            var random = new Random(5);
            for (int i = 0; i < 100; i++)
            {
                var data = new byte[random.Next(1, 256) * 512];
                random.NextBytes(data);
                long offset = random.Next(0, (int)((device.Capacity - data.Length) / 512)) * 512L;
                await device.WriteAsync(offset, data, forceUnitAccess: i % 5 == 0, cancellationToken: Ct);
                data.CopyTo(reference, offset);
            }
            await device.TrimAsync(0, 1 << 20, cancellationToken: Ct);
            Array.Clear(reference, 0, 1 << 20);   // nbdkit's memory plugin reads trimmed ranges as zeros
            await device.FlushAsync(cancellationToken: Ct);
            await AssertSameAsync(device, reference);
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync(cancellationToken: Ct);
        }
    }

    private static NbdServer Serve(IBlockDevice disk, string socket)
    {
        var server = new NbdServer();
        server.AddExport(new NbdExport("disk", disk));
        server.ListenUnix(socket);
        return server;
    }

    private static async Task AssertSameAsync(NbdClientDevice device, byte[] expected)
    {
        var actual = new byte[expected.Length];
        await device.ReadAsync(0, actual, cancellationToken: Ct);   // 16-32 MiB: split into 4 MiB requests
        Assert.True(expected.AsSpan().SequenceEqual(actual), "the device's bytes differ from the reference");
    }
}
