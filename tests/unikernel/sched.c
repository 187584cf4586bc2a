/*
 * Cooperative round-robin scheduler. Threads live on one global list,
 * thread_list, in creation order; schedule() on the boot CPU picks the next
 * runnable thread after the current one. Threads never preempt each other:
 * a thread runs until it calls schedule(), blocks, or returns.
 */
#include "kernel.h"

#define MAX_THREADS 8

/* Offsets that switch.S hard-codes. */
_Static_assert(offsetof(struct thread, sp) == 8, "switch.S uses THREAD_SP 8");
_Static_assert(offsetof(struct thread, ip) == 16, "switch.S uses THREAD_IP 16");
_Static_assert(offsetof(struct cpu, current) == 0, "thread_start reads %gs:0");
_Static_assert(offsetof(struct cpu, self) == 8, "this_cpu() reads %gs:8");

struct cpu cpus[MAX_CPUS];
struct thread *thread_list;

static struct thread thread_pool[MAX_THREADS];
static int thread_count;

static void thread_list_append(struct thread *thread)
{
	struct thread **link = &thread_list;

	while (*link)
		link = &(*link)->next;
	*link = thread;
}

struct thread *thread_create(const char *name, void (*entry)(void *),
			     void *arg, void *stack, unsigned long stack_size)
{
	struct thread *thread;

	if (thread_count == MAX_THREADS) {
		printk("sched: cannot create thread %s: all %d slots in use\n",
		       name, MAX_THREADS);
		return NULL;
	}
	thread = &thread_pool[thread_count];
	thread->id = thread_count++;
	thread->name = name;
	thread->entry = entry;
	thread->arg = arg;
	thread->stack = stack;
	thread->stack_size = stack_size;
	thread->flags = THREAD_RUNNABLE;
	thread->next = NULL;
	/* Entry functions start with rsp + 8 aligned to 16, as after a call. */
	thread->sp = ((unsigned long)stack + stack_size) & ~0xfUL;
	thread->ip = (unsigned long)thread_start;
	thread_list_append(thread);
	return thread;
}

/*
 * Make `idle` the current thread of CPU `cpu_id` and point this vCPU's GS
 * base at its struct cpu. `idle` is the context already running, the boot
 * code or an AP's start-up path. The first switch away from it stores its
 * sp and ip.
 */
void sched_init_cpu(int cpu_id, struct thread *idle)
{
	struct cpu *cpu = &cpus[cpu_id];

	cpu->self = cpu;
	cpu->cpu_id = cpu_id;
	cpu->idle = idle;
	cpu->current = idle;
	idle->flags |= THREAD_RUNNING;
	wrmsr(MSR_GS_BASE, (uint64_t)cpu);
}

static struct thread *pick_next(struct thread *current)
{
	struct thread *candidate = current;

	do {
		candidate = candidate->next ? candidate->next : thread_list;
		if (candidate == current)
			break;
		if ((candidate->flags & THREAD_RUNNABLE) &&
		    !(candidate->flags & (THREAD_RUNNING | THREAD_PINNED)))
			return candidate;
	} while (candidate != current);

	if (current->flags & THREAD_RUNNABLE)
		return current;
	return this_cpu()->idle;
}

noinline void schedule(void)
{
	struct cpu *cpu = this_cpu();
	struct thread *prev = cpu->current;
	struct thread *next = pick_next(prev);

	if (next == prev)
		return;
	prev->flags &= ~THREAD_RUNNING;
	next->flags |= THREAD_RUNNING;
	cpu->current = next;
	cpu->context_switches++;
	switch_context(prev, next);
	barrier();
}

/* Take the current thread off the run queue; it sleeps until made runnable. */
noinline void thread_block_current(void)
{
	this_cpu()->current->flags &= ~THREAD_RUNNABLE;
	schedule();
}

void thread_main(struct thread *thread)
{
	thread->entry(thread->arg);

	printk("sched: thread %s exited\n", thread->name);
	thread->flags = (thread->flags & ~THREAD_RUNNABLE) | THREAD_EXITED;
	for (;;)
		schedule();
}
