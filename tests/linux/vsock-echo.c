/* vsock-echo: the two ends of the vhost-user-vsock scenario: an AF_VSOCK client in the Linux frontend and a Unix-socket server in the Linux backend, checking data both ways. */
/*
 * Usage:
 *   vsock-echo client <cid> <port> <bytes>   connect to AF_VSOCK <cid>:<port>, send a 4-byte
 *                                            length and <bytes> bytes of a pattern, read the
 *                                            reply (the same length, every byte XOR 0xa5) and
 *                                            check it
 *   vsock-echo server <unix-path> <count>    listen on the Unix socket <unix-path> (where
 *                                            vhost-device-vsock connects for the guest's
 *                                            connections to port P: <uds-path>_P), serve <count>
 *                                            connections: check the pattern, send the reply
 *
 * Each end prints one line per connection, "vsock-echo: <end>: ..." and exits 0 when every
 * check passed, 1 otherwise. The pattern depends on the offset and the length, so a reply
 * from an earlier connection or a shifted stream does not match.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define MAX_BYTES (4u << 20)

static uint8_t pattern(uint32_t i, uint32_t len)
{
	return (uint8_t)(i * 7u + (i >> 8) + len);
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int client(unsigned int cid, unsigned int port, uint32_t len)
{
	struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	uint8_t *buf = malloc(len ? len : 1);
	uint32_t i, bad = 0;
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);

	if (fd < 0 || !buf) {
		printf("vsock-echo: client: socket(AF_VSOCK): %s\n", strerror(errno));
		return 1;
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		printf("vsock-echo: client: connect to %u:%u: %s\n", cid, port, strerror(errno));
		return 1;
	}
	for (i = 0; i < len; i++)
		buf[i] = pattern(i, len);
	if (write_all(fd, &len, sizeof(len)) || write_all(fd, buf, len)) {
		printf("vsock-echo: client: send: %s\n", strerror(errno));
		return 1;
	}
	memset(buf, 0, len);
	if (read_all(fd, buf, len)) {
		printf("vsock-echo: client: reply of %u bytes: %s\n", len,
		       errno ? strerror(errno) : "closed early");
		return 1;
	}
	for (i = 0; i < len; i++)
		bad += buf[i] != (uint8_t)(pattern(i, len) ^ 0xa5);
	close(fd);
	if (bad) {
		printf("vsock-echo: client: %u of %u reply bytes wrong\n", bad, len);
		return 1;
	}
	printf("vsock-echo: client: %u bytes sent to %u:%u, %u-byte reply verified\n", len, cid,
	       port, len);
	return 0;
}

static int server(const char *path, unsigned int count)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), status = 0;
	unsigned int served;

	if (fd < 0 || strlen(path) >= sizeof(addr.sun_path)) {
		printf("vsock-echo: server: socket %s: %s\n", path, strerror(errno));
		return 1;
	}
	strcpy(addr.sun_path, path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0) {
		printf("vsock-echo: server: listen on %s: %s\n", path, strerror(errno));
		return 1;
	}
	printf("vsock-echo: server: listening on %s\n", path);
	fflush(stdout);
	for (served = 0; served < count; served++) {
		uint32_t len, i, bad = 0;
		uint8_t *buf;
		int c = accept(fd, NULL, NULL);

		if (c < 0) {
			printf("vsock-echo: server: accept: %s\n", strerror(errno));
			return 1;
		}
		if (read_all(c, &len, sizeof(len)) || len > MAX_BYTES) {
			printf("vsock-echo: server: no valid length\n");
			status = 1;
			close(c);
			continue;
		}
		buf = malloc(len ? len : 1);
		if (!buf || read_all(c, buf, len)) {
			printf("vsock-echo: server: %u bytes announced, fewer received\n", len);
			status = 1;
			close(c);
			free(buf);
			continue;
		}
		for (i = 0; i < len; i++) {
			bad += buf[i] != pattern(i, len);
			buf[i] ^= 0xa5;
		}
		if (write_all(c, buf, len)) {
			printf("vsock-echo: server: reply: %s\n", strerror(errno));
			status = 1;
		} else if (bad) {
			printf("vsock-echo: server: %u of %u received bytes wrong\n", bad, len);
			status = 1;
		} else {
			printf("vsock-echo: server: connection %u: %u bytes received and verified, reply sent\n",
			       served + 1, len);
		}
		fflush(stdout);
		free(buf);
		close(c);
	}
	return status;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "client")) {
		unsigned long len = strtoul(argv[4], NULL, 0);

		if (len > MAX_BYTES) {
			printf("vsock-echo: client: at most %u bytes\n", MAX_BYTES);
			return 1;
		}
		return client((unsigned int)strtoul(argv[2], NULL, 0),
			      (unsigned int)strtoul(argv[3], NULL, 0), (uint32_t)len);
	}
	if (argc == 4 && !strcmp(argv[1], "server"))
		return server(argv[2], (unsigned int)strtoul(argv[3], NULL, 0));
	fprintf(stderr, "usage: vsock-echo client <cid> <port> <bytes> | server <unix-path> <count>\n");
	return 2;
}
