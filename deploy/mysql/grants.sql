-- Each service owns one database; the ticketing user may create and migrate them.
GRANT ALL PRIVILEGES ON `ticketing\_%`.* TO 'ticketing'@'%';
FLUSH PRIVILEGES;
