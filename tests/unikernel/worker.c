/*
 * The "worker" thread: a call chain six functions deep whose arguments and
 * locals cover the usual C types, ending in the end mode chosen on the
 * command line. Every function of the chain is noinline and uses its
 * callee's result afterwards, so -O2 keeps each frame and makes no tail
 * calls. finish_transform() is the one static inline helper, which gives
 * an -O2 backtrace an inlined frame.
 */
#include "kernel.h"
#ifdef STARDUST_XEN_PV
#include "xen/xen.h"
#endif

/* isa-debug-exit: QEMU exits with status (value << 1) | 1. */
#define DEBUG_EXIT_PORT 0xf4
#define DEBUG_EXIT_VALUE 0x10

struct point {
	int x;
	int y;
};

struct request {
	int id;
	char tag;
	unsigned long token;
	const char *label;
	struct point origin;
	int values[4];
};

struct worker_config {
	const char *name;
	int rounds;
	unsigned long seed;
	struct point origin;
};

struct worker_stats {
	unsigned long requests;
	unsigned long checksum;
	int last_id;
	char last_tag;
};

enum end_mode end_mode = MODE_SPIN;

struct worker_config worker_config = {
	.name = "worker",
	.rounds = 3,
	.seed = 0x5eed5eed,
	.origin = { .x = 7, .y = -3 },
};

struct worker_stats worker_stats;

/* Results stored here so -O2 cannot drop the computations that make them. */
volatile unsigned long worker_result;
/* Incremented forever by spin_here(). */
volatile unsigned long spin_counter;
/* Always NULL; read through a volatile so -O2 emits a real load. */
struct request *volatile null_request;
/* Always 0; read through a volatile so -O2 emits a real division. */
volatile int zero_divisor;

static const char *const mode_names[] = {
	[MODE_SPIN] = "spin",
	[MODE_UD2] = "ud2",
	[MODE_NULL] = "null",
	[MODE_DIV0] = "div0",
	[MODE_EXIT] = "exit",
};

const char *end_mode_name(enum end_mode mode)
{
	if ((unsigned int)mode < sizeof(mode_names) / sizeof(mode_names[0]))
		return mode_names[mode];
	return "unknown";
}

noinline void spin_here(unsigned long token)
{
	for (;;) {
		spin_counter += token & 0xff;
		cpu_relax();
	}
}

noinline long trigger_ud2(unsigned long token)
{
	volatile unsigned long seen = token;

	__asm__ volatile("ud2");
	return (long)seen;
}

noinline long trigger_null(unsigned long token)
{
	struct request *request = null_request;

	return request->id + (long)token;
}

noinline long trigger_div0(int numerator)
{
	return numerator / zero_divisor;
}

#ifdef STARDUST_XEN_PV
noinline long trigger_exit(int status)
{
	printk("stardust-test: exiting through SCHEDOP_shutdown poweroff\n");
	xen_poweroff();
	return status;
}
#else
noinline long trigger_exit(int status)
{
	printk("stardust-test: exiting through isa-debug-exit\n");
	outl(DEBUG_EXIT_PORT, (uint32_t)status);
	/* Still here: QEMU has no isa-debug-exit device at that port. */
	printk("stardust-test: no exit device, halted\n");
	crash_halt();
	return status;
}
#endif

noinline long dispatch_end_mode(enum end_mode mode, unsigned long token,
				const struct point *where)
{
	long result = 0;

	printk("stardust-test: reached mode=%s\n", end_mode_name(mode));
	switch (mode) {
	case MODE_SPIN:
		spin_here(token);
		break;
	case MODE_UD2:
		result = trigger_ud2(token);
		break;
	case MODE_NULL:
		result = trigger_null(token);
		break;
	case MODE_DIV0:
		result = trigger_div0((int)token);
		break;
	case MODE_EXIT:
		result = trigger_exit(DEBUG_EXIT_VALUE);
		break;
	}
	worker_result = (unsigned long)result;
	return result + where->x;
}

static inline long finish_transform(const int *scaled, int count,
				    unsigned long checksum)
{
	struct point where = { .x = scaled[0], .y = count };
	long total = 0;

	for (int i = 0; i < count; i++)
		total += scaled[i];
	total += dispatch_end_mode(end_mode, checksum ^ (unsigned long)total,
				   &where);
	return total + where.y;
}

noinline long transform_values(int *values, int count, char tag,
			       unsigned long checksum)
{
	int scaled[4] = { 0 };
	long total;

	for (int i = 0; i < count && i < 4; i++)
		scaled[i] = values[i] * 3 + tag;
	total = finish_transform(scaled, count < 4 ? count : 4, checksum);
	worker_stats.last_tag = tag;
	return total - tag;
}

noinline unsigned long compute_checksum(const unsigned char *buffer,
					unsigned long length,
					struct point origin)
{
	unsigned long checksum = (unsigned long)(origin.x * 31 + origin.y);
	int values[4];

	for (unsigned long i = 0; i < length; i++)
		checksum = checksum * 33 + buffer[i];
	for (int i = 0; i < 4; i++)
		values[i] = (int)(checksum >> (i * 8)) & 0xff;

	checksum += (unsigned long)transform_values(values, 4, (char)buffer[0],
						    checksum);
	worker_stats.checksum = checksum;
	return checksum;
}

noinline int process_request(struct request *request, int depth)
{
	static unsigned long call_count;
	unsigned long checksum;

	call_count++;
	worker_stats.requests = call_count;
	worker_stats.last_id = request->id;
	checksum = compute_checksum((const unsigned char *)request->label,
				    strlen(request->label), request->origin);
	request->token = checksum;
	return (int)(checksum & 0xffff) + depth;
}

void worker_main(void *arg)
{
	struct worker_config *config = arg;
	struct request request = {
		.id = 42,
		.tag = 'W',
		.token = config->seed,
		.label = "stardump test request",
		.origin = config->origin,
		.values = { 1, 2, 3, 4 },
	};
	int status;

	printk("worker: running %s with seed 0x%lx\n", config->name,
	       config->seed);
	status = process_request(&request, config->rounds);
	worker_result = (unsigned long)status + request.token;
	printk("worker: request %d done, status %d\n", request.id, status);
}
