using System.Net;
using System.Net.Sockets;
using Storage.Devices;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>Where the server listens, who may connect, and how it stops.</summary>
public class ListenerTests
{
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task The_unix_socket_is_owner_only()
    {
        await using var server = new TestServer();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(server.UnixPath));
    }

    [Theory]
    [InlineData("0.0.0.0:0")]
    [InlineData("[::]:0")]
    [InlineData("192.0.2.1:0")]
    [InlineData("::ffff:10.0.0.1")]
    public async Task Tcp_beyond_loopback_without_tls_is_refused_with_the_reason(string address)
    {
        await using var server = new NbdServer();
        var e = Assert.Throws<NbdConfigurationException>(() => server.Listen(address));
        Assert.Contains("TLS", e.Message);
        Assert.Contains("allow-list", e.Message);
        Assert.Empty(server.Endpoints);
    }

    [Theory]
    [InlineData("127.0.0.1:0", "127.0.0.1")]
    [InlineData("localhost:0", "127.0.0.1")]
    [InlineData("127.0.0.2:0", "127.0.0.2")]
    public async Task Loopback_addresses_are_accepted(string address, string bound)
    {
        await using var server = new NbdServer();
        var endpoint = (IPEndPoint)server.Listen(address);
        Assert.Equal(IPAddress.Parse(bound), endpoint.Address);
        Assert.NotEqual(0, endpoint.Port);
        Assert.Equal([endpoint], server.Endpoints);
    }

    [Theory]
    [InlineData("127.0.0.1", "127.0.0.1", NbdServer.DefaultPort)]
    [InlineData("127.0.0.1:99", "127.0.0.1", 99)]
    [InlineData("[::1]:99", "::1", 99)]
    [InlineData("::1", "::1", NbdServer.DefaultPort)]
    [InlineData("LOCALHOST:7", "127.0.0.1", 7)]
    public void Tcp_addresses_parse(string text, string address, int port) =>
        Assert.Equal(new IPEndPoint(IPAddress.Parse(address), port), NbdServer.ParseTcp(text));

    [Theory]
    [InlineData("example.com:10809")]
    [InlineData("127.0.0.1:x")]
    [InlineData("127.0.0.1:70000")]
    public void Bad_addresses_are_format_errors(string text) => Assert.Throws<FormatException>(() => NbdServer.ParseTcp(text));

    [Fact]
    public async Task A_stale_socket_file_is_replaced_but_a_live_one_or_a_regular_file_is_not()
    {
        using var directory = new TempDirectory();
        string path = directory.File("s.sock");
        using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            dead.Bind(new UnixDomainSocketEndPoint(path)); // leaves the file behind, nobody listening
        await using var server = new NbdServer();
        server.ListenUnix(path);

        await using var second = new NbdServer();
        var inUse = Assert.Throws<NbdConfigurationException>(() => second.ListenUnix(path));
        Assert.Contains("listening", inUse.Message);

        string file = directory.File("plain");
        File.WriteAllText(file, "keep me");
        Assert.Throws<NbdConfigurationException>(() => second.ListenUnix(file));
        Assert.Equal("keep me", File.ReadAllText(file));
    }

    [Fact]
    public async Task Connections_beyond_the_limit_are_closed_on_accept()
    {
        await using var server = new TestServer(options: new NbdServerOptions { MaxConnections = 2 });
        var (a, _) = await OpenAsync(server.Tcp);
        var (b, _) = await OpenAsync(server.Unix);
        await using var _ = a;
        await using var __ = b;
        await using var c = await ConnectAsync(server.Tcp);
        Assert.True(await c.IsClosedByServerAsync());
        Assert.Equal(2, server.Server.ConnectionCount);
        Assert.Contains(server.Log, l => l.Contains("already 2 connections", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Stop_closes_connections_removes_the_socket_and_refuses_new_clients()
    {
        var server = new TestServer();
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;
        var idle = await ConnectAsync(server.Unix); // still in the handshake
        await using var __ = idle;
        await server.WaitForConnectionsAsync(2);

        await server.Server.StopAsync(TestContext.Current.CancellationToken);
        Assert.Equal(0, server.Server.ConnectionCount);
        Assert.False(File.Exists(server.UnixPath));
        Assert.True(await client.IsClosedByServerAsync());
        await Assert.ThrowsAnyAsync<SocketException>(() => ConnectAsync(server.Tcp));
        Assert.Throws<ObjectDisposedException>(() => server.Server.AddExport(new NbdExport("x", server.Device)));
        await server.DisposeAsync();
    }

    [Fact]
    public async Task Stop_cuts_a_client_that_never_reads_its_replies_after_the_timeout()
    {
        var server = new TestServer(capacity: 32 << 20, options: new NbdServerOptions { StopTimeout = TimeSpan.FromMilliseconds(300) });
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;
        // Ask for far more than the socket buffers hold and read none of it.
        var burst = Enumerable.Range(0, 64).SelectMany(i => Request(CmdRead, 0, (ulong)i, 0, 1 << 20)).ToArray();
        await client.SendAsync(burst);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        var stop = server.Server.StopAsync(TestContext.Current.CancellationToken);
        Assert.True(await Task.WhenAny(stop, Task.Delay(10_000, TestContext.Current.CancellationToken)) == stop, "stop hung");
        await server.DisposeAsync();
    }

    [Fact]
    public async Task Stop_while_a_client_is_half_way_through_a_write_payload_completes_and_writes_nothing()
    {
        var server = new TestServer(capacity: 1 << 20, seed: 8, options: new NbdServerOptions { StopTimeout = TimeSpan.FromSeconds(5) });
        var before = server.Memory!.Bytes.ToArray();
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;
        var write = Request(CmdWrite, 0, 1, 0, 65536, new byte[65536]);
        await client.SendAsync(write.AsMemory(0, 28 + 1000));
        await Task.Delay(100, TestContext.Current.CancellationToken);
        var stop = server.Server.StopAsync(TestContext.Current.CancellationToken);
        Assert.True(await Task.WhenAny(stop, Task.Delay(4000, TestContext.Current.CancellationToken)) == stop, "stop waited for a request that never arrived");
        Assert.True(before.AsSpan().SequenceEqual(server.Memory.Bytes));
        await server.DisposeAsync();
    }

    [Fact]
    public async Task Removing_an_export_closes_its_connections_only()
    {
        await using var server = new TestServer();
        using var other = new MemoryBlockDevice(1 << 20);
        server.Server.AddExport(new NbdExport("other", other));
        var (onDisk, _) = await OpenAsync(server.Tcp);
        var (onOther, _) = await OpenAsync(server.Tcp, "other");
        await using var _ = onDisk;
        await using var __ = onOther;

        Assert.True(await server.Server.RemoveExportAsync("other", TestContext.Current.CancellationToken));
        Assert.False(await server.Server.RemoveExportAsync("other", TestContext.Current.CancellationToken));
        Assert.True(await onOther.IsClosedByServerAsync());
        Assert.Equal(server.Memory!.Bytes[..512].ToArray(), await onDisk.ReadAsync(0, 512));
        Assert.Equal(["disk"], server.Server.Exports.Select(e => e.Name));

        await using var late = await ConnectAsync(server.Tcp);
        await late.StartAsync();
        var (final, _, _) = await late.InfoAsync(OptGo, "other");
        Assert.Equal(ErrUnknown, final);
        Assert.Throws<NbdConfigurationException>(() => server.Server.AddExport(new NbdExport("disk", other)));
    }

    [Fact]
    public void Export_names_and_options_are_checked()
    {
        using var device = new MemoryBlockDevice(1 << 20, 4096);
        Assert.Throws<ArgumentException>(() => new NbdExport("a\0b", device));
        Assert.Throws<ArgumentException>(() => new NbdExport(new string('x', 4097), device));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NbdExport("a", device) { PreferredBlockSize = 512 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new NbdExport("a", device) { PreferredBlockSize = 12288 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new NbdServer(new NbdServerOptions { MaxPayloadSize = 1000 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NbdServer(new NbdServerOptions { MaxRequestsInFlight = 0 }));
    }

    [Fact]
    public void Uris_follow_the_nbd_uri_specification()
    {
        Assert.Equal("nbd://127.0.0.1:10809/disk", NbdServer.FormatUri(new IPEndPoint(IPAddress.Loopback, 10809), "disk"));
        Assert.Equal("nbds://[::1]:5/a%20b", NbdServer.FormatUri(new IPEndPoint(IPAddress.IPv6Loopback, 5), "a b", tls: true));
        Assert.Equal("nbd+unix:///disk?socket=/run/x.sock", NbdServer.FormatUri(new UnixDomainSocketEndPoint("/run/x.sock"), "disk"));
    }
}
