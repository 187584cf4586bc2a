/*
 * The C library functions the kernel uses. gcc also emits calls to memset
 * and memcpy for large struct copies and initializers.
 */
#include "kernel.h"

void *memset(void *dest, int c, size_t n)
{
	unsigned char *d = dest;

	while (n--)
		*d++ = (unsigned char)c;
	return dest;
}

void *memcpy(void *dest, const void *src, size_t n)
{
	unsigned char *d = dest;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
	return dest;
}

void *memmove(void *dest, const void *src, size_t n)
{
	unsigned char *d = dest;
	const unsigned char *s = src;

	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else {
		while (n--)
			d[n] = s[n];
	}
	return dest;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++) {
		if (*x != *y)
			return *x - *y;
	}
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

/* Whether the space-separated command line contains `word` as a whole word. */
int cmdline_has_word(const char *cmdline, const char *word)
{
	size_t word_length = strlen(word);
	const char *p = cmdline;

	while (p && *p) {
		size_t length = 0;

		while (p[length] && p[length] != ' ')
			length++;
		if (length == word_length && strncmp(p, word, length) == 0)
			return 1;
		p = p[length] ? p + length + 1 : p + length;
	}
	return 0;
}
